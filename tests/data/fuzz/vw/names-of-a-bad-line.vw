1 |f color
-1 |f color 7
1 |f color
1 |f a b |g:x c

1 |f café æ—¥ x^y:2

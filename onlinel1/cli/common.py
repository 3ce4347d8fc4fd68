"""Pieces shared by the commands: errors, learner flags, data flags."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Iterator

from onlinel1.batch import Batch
from onlinel1.errors import OptionError
from onlinel1.options import (FEATURE_FIELDS, LOSS_NAMES, ORIGINS, RULES, SCHEDULES, UPDATES,
                              LearnerOptions, penalty_help)

FORMATS = ("svmlight", "vw")
EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure to report as one line on stderr; the command exits with
    ``exit_code``."""

    exit_code = EXIT_ERROR


class EmptyInput(CommandError):
    """An input with no example at all: a usage error (exit status 2)."""

    exit_code = EXIT_USAGE


class Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (``--help`` shows the usage).

    A sub-command's parser reports the arguments it does not know itself,
    so that the message points to ``onlinel1 train --help`` rather than to
    the top-level ``onlinel1 --help`` (argparse leaves them to the
    top-level parser, which knows nothing of the sub-command's flags)."""

    #: Set on the parsers made by ``add_subparsers().add_parser``.
    subcommand = False

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_subparsers(self, **kwargs: Any) -> Any:
        action = super().add_subparsers(**kwargs)
        make = action.add_parser

        def add_parser(name: str, **options: Any) -> argparse.ArgumentParser:
            parser = make(name, **options)
            parser.subcommand = True
            return parser

        action.add_parser = add_parser
        return action

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        # A sub-command takes every argument after its name: what it does not
        # know, nobody does.
        if extras and self.subcommand:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


# ----------------------------------------------------------------- options

#: (flag, LearnerOptions field) of every learner setting on the command line.
LEARNER_FLAGS = (("--loss", "loss"), ("--quantile-tau", "quantile_tau"), ("--update", "update"), ("--l1", "l1"), ("--l2", "l2"),
                 ("--eta0", "eta0"), ("--schedule", "schedule"), ("--power-t", "power_t"),
                 ("--decay-rate", "decay_rate"), ("--decay-steps", "decay_steps"),
                 ("--origin", "origin"), ("--truncate-every", "truncate_every"),
                 ("--truncate-theta", "truncate_theta"), ("--adagrad-delta", "adagrad_delta"),
                 ("--ftrl-beta", "ftrl_beta"), ("--spred-init", "spred_init"),
                 ("--spred-threshold", "spred_threshold"), ("--max-features", "max_features"),
                 ("--expire-after-examples", "expire_after_examples"), ("-q", "interactions"),
                 ("--namespaced-integers", "namespaced_integers"), ("--minibatch", "minibatch"),
                 ("--adaptive", "adaptive"))
#: The flag of each LearnerOptions field that has one.
FLAG_OF = {field: flag for flag, field in LEARNER_FLAGS}


def add_learner_arguments(parser: argparse.ArgumentParser, with_defaults: bool = True) -> None:
    """The learner's settings, shared by every command that builds one.

    ``with_defaults=False`` leaves unset flags as None so that a config
    file can supply them (``serve``); the help shows the built-in defaults
    either way."""
    d = LearnerOptions()

    def default(value: Any) -> Any:
        return value if with_defaults else None

    g = parser.add_argument_group(
        "learner", "The model and its update rule (docs/algorithms.md has the exact rules).")
    g.add_argument("--loss", choices=LOSS_NAMES, default=default(d.loss),
                   help=f"log (logistic; labels -1/+1 or 0/1; 'logistic' is another name for "
                        f"it, Vowpal Wabbit's), squared (regression), hinge (linear SVM), "
                        f"poisson (counts, labels >= 0: the margin is the log of the mean, "
                        f"predictions are the mean) or quantile (the pinball loss at "
                        f"--quantile-tau) (default: {d.loss})")
    g.add_argument("--quantile-tau", type=float, default=default(d.quantile_tau), metavar="TAU",
                   help=f"the quantile the quantile loss learns, in (0, 1) (default: "
                        f"{d.quantile_tau}, the median)")
    rules = "; ".join(f"{name}: {spec.title}" for name, spec in RULES.items())
    g.add_argument("--update", choices=UPDATES, default=default(d.update),
                   help=f"the update rule: {rules} (default: {d.update})")
    g.add_argument("--l1", type=float, default=default(d.l1), metavar="X",
                   help=f"L1 penalty: {penalty_help('l1')} (default: {d.l1})")
    g.add_argument("--l2", type=float, default=default(d.l2), metavar="X",
                   help=f"L2 penalty (with --l1, the elastic net): {penalty_help('l2')} "
                        f"(default: {d.l2})")
    g.add_argument("--eta0", "-l", type=float, default=default(d.eta0), metavar="X",
                   help=f"initial step size; -l is Vowpal Wabbit's name for it (default: "
                        f"{d.eta0})")
    g.add_argument("--schedule", choices=SCHEDULES, default=default(d.schedule),
                   help=f"step size: eta0, eta0/t^power_t, or eta0*decay_rate^(t/decay_steps) "
                        f"(default: {d.schedule})")
    g.add_argument("--power-t", type=float, default=default(d.power_t), metavar="X",
                   help=f"exponent of the invscaling schedule (default: {d.power_t})")
    g.add_argument("--decay-rate", type=float, default=default(d.decay_rate), metavar="X",
                   help=f"base of the exponential schedule (default: {d.decay_rate})")
    g.add_argument("--decay-steps", type=float, default=default(d.decay_steps), metavar="N",
                   help=f"examples per decay_rate factor in the exponential schedule "
                        f"(default: {d.decay_steps:g})")
    g.add_argument("--origin", choices=ORIGINS, default=default(d.origin),
                   help=f"where a new feature's cumulative L1 penalty starts: start "
                        f"(as in the paper) or first-seen (for endless streams) "
                        f"(default: {d.origin})")
    g.add_argument("--truncate-every", type=int, default=default(d.truncate_every), metavar="K",
                   help=f"truncated: truncate every K examples (default: {d.truncate_every})")
    g.add_argument("--truncate-theta", type=float, default=default(d.truncate_theta),
                   metavar="X", help="truncated: only weights with |w| <= X are truncated "
                                     "(default: inf)")
    g.add_argument("--adagrad-delta", type=float, default=default(d.adagrad_delta), metavar="X",
                   help=f"adagrad-fobos and --adaptive: step eta0/sqrt(X + sum of squared gradients) "
                        f"(default: {d.adagrad_delta:g})")
    g.add_argument("--ftrl-beta", type=float, default=default(d.ftrl_beta), metavar="X",
                   help=f"ftrl: beta of the per-coordinate rate (alpha is --eta0) "
                        f"(default: {d.ftrl_beta:g})")
    g.add_argument("--spred-init", type=float, default=default(d.spred_init), metavar="X",
                   help=f"spred: a new feature starts at (a, b) = (X, 0) (default: {d.spred_init:g})")
    g.add_argument("--spred-threshold", type=float, default=default(d.spred_threshold),
                   metavar="X", help=f"spred: |w| <= X is an exact zero (default: "
                                     f"{d.spred_threshold:g})")
    g.add_argument("--max-features", type=int, default=default(d.max_features), metavar="N",
                   help="memory budget: hold at most N features, evicting the least recently "
                        "updated (1/8 of N at a time) when new ones would pass it; 0: no "
                        "bound (default: 0)")
    g.add_argument("--expire-after-examples", type=int,
                   default=default(d.expire_after_examples), metavar="M",
                   help="drop a feature not updated for M examples (it comes back as a new "
                        "one); 0: never (default: 0)")
    g.add_argument("--minibatch", type=int, default=default(d.minibatch), metavar="B",
                   help="learn in mini-batches of B examples: their margins use the weights at "
                        "the mini-batch's start, then each feature takes one update with the "
                        "summed gradients and its rule's penalty of the B steps; 1: the "
                        "sequential rule (docs/algorithms.md, \"Mini-batches\"; not with "
                        "--max-features or --expire-after-examples) (default: 1)")
    g.add_argument("--adaptive", action="store_const", const=True,
                   default=False if with_defaults else None,
                   help="per-coordinate adaptive steps eta0/sqrt(--adagrad-delta + sum of the "
                        "feature's squared gradients), as AdaGrad and Vowpal Wabbit's default: "
                        "for cumulative (origin first-seen) and fobos (then the same as "
                        "adagrad-fobos, the default rule, whose steps adapt already); the "
                        "schedule sets only the intercept's step "
                        "(docs/algorithms.md, \"Adaptive steps\")")
    g.add_argument("--no-intercept", action="store_const", const=True,
                   default=False if with_defaults else None,
                   help="do not learn a bias term")
    f = parser.add_argument_group(
        "features", "How VW text becomes features; kept in the model, so predict applies it "
                    "too (docs/formats.md).")
    f.add_argument("-q", "--quadratic", dest="interactions", action="append", default=None,
                   type=_interaction(2), metavar="AB",
                   help="cross every feature of the namespaces starting with A with every one "
                        "of those starting with B, as Vowpal Wabbit's -q (' ' is the default "
                        "namespace, ':' any namespace: -q :: crosses every pair); repeat for "
                        "more pairs")
    f.add_argument("--cubic", dest="interactions", action="append", type=_interaction(3),
                   metavar="ABC", help="cross three namespaces (Vowpal Wabbit's --cubic)")
    f.add_argument("--interactions", dest="interactions", action="append",
                   type=_interaction(None), metavar="AB..",
                   help="cross 2 to 8 namespaces (Vowpal Wabbit's --interactions)")
    f.add_argument("--namespaced-integers", action="store_const", const=True,
                   default=False if with_defaults else None,
                   help="an integer feature name in a named namespace is offset by the "
                        "namespace's hash, as in Vowpal Wabbit, so |user 42 |ad 42 are two "
                        "features (default: integer names are their own keys, in any "
                        "namespace, as svmlight indices are)")


def _interaction(order: int | None) -> Any:
    """The argparse type of an interaction of ``order`` namespaces (None: 2 or more)."""
    def check(text: str) -> str:
        if (order is not None and len(text) != order) or len(text) < 2:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be {order if order else '2 or more'} namespace characters")
        return text
    return check


def learner_options(args: argparse.Namespace,
                    base: dict[str, Any] | None = None) -> LearnerOptions:
    """Options from ``base`` (e.g. a config file's [learner] table, the
    file being ``args.config``), overridden by the flags that were given."""
    values = dict(base or {})
    given = set()
    for _, field in LEARNER_FLAGS:
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
            given.add(field)
    if args.no_intercept:
        values["fit_intercept"] = False
        given.add("fit_intercept")
    try:
        return LearnerOptions.from_dict(values)
    except OptionError as exc:
        # Name what the user wrote: the flag ("l2 must be..." -> "--l2 must
        # be..."), or the config file's key when the value came from there;
        # a setting with neither (rebase_at) keeps its name.
        config = getattr(args, "config", None)
        flag = FLAG_OF.get(exc.option)
        if config and exc.option not in given and exc.option in (base or {}) \
                or config and exc.reason == "unknown":
            message = f"{config}: [learner] {exc}"
        elif flag is None or exc.detail is None:
            message = str(exc)
        else:
            message = f"{flag} {exc.detail}"
        raise CommandError(message) from None


def explicit_learner_values(args: argparse.Namespace, table: dict[str, Any]) -> dict[str, Any]:
    """The learner settings the user gave (config file and flags), not defaults."""
    values = dict(table)
    for _, field in LEARNER_FLAGS:
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    if args.no_intercept:
        values["fit_intercept"] = False
    return values


def add_curve_client_arguments(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """``--curve-secret-key`` and ``--curve-server-key`` of the commands
    that talk to a daemon. ``suppress``: no default (``argparse.SUPPRESS``),
    for a sub-command whose parent has the flags too (``models``)."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--curve-secret-key", metavar="FILE", default=default,
                        help="for a daemon that uses CURVE: this client's secret key file "
                             "(PATH.key of 'onlinel1 keygen PATH'); its PATH.pub must be in "
                             "the daemon's --curve-allow")
    parser.add_argument("--curve-server-key", metavar="FILE", default=default,
                        help="for a daemon that uses CURVE: the daemon's public key file (the "
                             ".pub of its --curve-secret-key)")


def curve_timeout_hint(args: argparse.Namespace) -> str:
    """What to check when a daemon does not answer, as far as CURVE goes."""
    if getattr(args, "curve_secret_key", None) or getattr(args, "curve_server_key", None):
        return ("if the daemon uses CURVE, check --curve-server-key and that your public key "
                "is in its --curve-allow")
    return "if the daemon uses CURVE, give --curve-secret-key and --curve-server-key"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA",
                        help="examples in svmlight/libsvm or Vowpal Wabbit text format "
                             "(.gz is read transparently; - for standard input)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="input format (default: vw for *.vw[.gz], svmlight otherwise)")
    parser.add_argument("--batch-size", type=int, default=8192, metavar="N",
                        help="rows parsed and learned at a time (default: %(default)s)")


def data_format(args: argparse.Namespace, path: str | None = None) -> str:
    """``--format``, else the format of ``path`` (DATA by default) by its name."""
    if args.format:
        return args.format
    path = args.data if path is None else path
    name = path[:-3] if path.endswith(".gz") else path
    return "vw" if name.endswith(".vw") else "svmlight"


def add_read_ahead_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--no-read-ahead", dest="read_ahead", action="store_false",
                        help=f"parse the next block in a second thread while this one is "
                             f"{what} (default); turn off to debug or to use one core")


def read_ahead(args: argparse.Namespace, batches: Iterator[Batch]) -> Iterator[Batch]:
    """``batches`` parsed in a second thread (onlinel1.io.readahead), or as
    they are with ``--no-read-ahead``.  Close the result (``contextlib.
    closing``) so that an early exit stops the thread."""
    from onlinel1.io.readahead import DEFAULT_DEPTH, read_ahead as ahead
    return ahead(batches, depth=DEFAULT_DEPTH if args.read_ahead else 0)


def read(args: argparse.Namespace, names: dict[int, str] | None = None,
         path: str | None = None, options: LearnerOptions | None = None) -> Iterator[Batch]:
    """The batches of DATA (or of ``path``, e.g. a --test file; ``-`` is
    standard input, gzip or not), with the interactions and
    namespaced_integers of ``options`` (the learner's), or else of the
    flags given.  A command whose parser sets ``optional_labels``
    (``predict``) takes lines without a label (their label is NaN)."""
    from onlinel1.io import read_batches
    path = args.data if path is None else path
    check_data(args, path)
    source: Any = sys.stdin.buffer if path == "-" else path
    features = {name: getattr(options, name) if options is not None else getattr(args, name, None)
                for name in FEATURE_FIELDS}
    try:
        return read_batches(source, data_format(args, path), batch_size=args.batch_size,
                            names=names, optional_labels=getattr(args, "optional_labels", False),
                            **{name: value for name, value in features.items() if value})
    except ValueError as exc:
        raise CommandError(f"{source_name(path)}: {exc}") from None


def check_data(args: argparse.Namespace, path: str | None = None) -> None:
    """What ``read`` checks before it reads anything: ``--batch-size``, and
    that DATA (or ``path``) is a file that can be read (``-`` is)."""
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    path = args.data if path is None else path
    if path != "-":
        check_input_file(path)


def read_as_model(args: argparse.Namespace, learner: dict[str, Any] | None,
                  unknown: str = "", quiet: bool = False) -> Iterator[Batch]:
    """DATA read as the daemon's model reads a VW file, for the commands
    that send it columnar batches (``send``, ``predict --connect``): a
    columnar batch carries no namespaces, so the daemon cannot cross it
    (docs/protocol.md, "Interactions and namespaced integers"), and the
    client reads the file with the model's ``interactions`` and
    ``namespaced_integers`` (``learner``: the ``learner`` map of the
    model's ``config`` reply), as ``train`` and ``predict --model`` do.

    svmlight data for a model with interactions is refused: svmlight has no
    namespaces to cross, and uncrossed rows would train (or be scored by)
    another model than ``train`` gives from the same data (``train`` and
    ``predict --model`` refuse it too).  ``learner`` None: the model's
    settings are not known (``unknown`` says why); VW data is read as
    written, with a warning on stderr (none with ``quiet``: ``send
    --no-check``, which asks nothing)."""
    fmt = data_format(args)
    if learner is None:
        if fmt == "vw" and not quiet:
            print(f"onlinel1: warning: {source_name(args.data)} is read without the model's "
                  f"interactions (-q) and --namespaced-integers: {unknown}; with a model that "
                  f"has them, its rows are not crossed as 'onlinel1 train' would cross them",
                  file=sys.stderr)
        return read(args)
    features = argparse.Namespace(
        interactions=tuple(learner.get("interactions") or ()),
        namespaced_integers=bool(learner.get("namespaced_integers")))
    if features.interactions and fmt != "vw":
        terms = " ".join(f"-q {t!r}" if len(t) == 2 else f"--interactions {t!r}"
                         for t in features.interactions)
        raise CommandError(
            f"{source_name(args.data)}: the daemon's model has interactions ({terms}), which "
            f"cross the namespaces of Vowpal Wabbit text, and {fmt} has no namespaces: send "
            f"the data as VW text (--format vw), or to a model without interactions")
    return read(args, options=features)


def check_input_file(path: str, what: str = "") -> None:
    """A CommandError unless ``path`` is a file that can be read."""
    if not os.path.exists(path):
        raise CommandError(f"{what}{path}: no such file")
    if os.path.isdir(path):
        raise CommandError(f"{what}{path}: a directory, not a data file")


def source_name(path: str) -> str:
    """How messages name an input: its path, ``<stdin>`` for ``-``."""
    return "<stdin>" if path == "-" else path



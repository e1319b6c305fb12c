"""`%load_ext layerlens`: inline display of layerlens results and the `%layerlens` magic.

Results display through IPython's `_repr_*_` protocol wherever IPython runs; loading the
extension also makes sure the HTML, PNG and SVG formatters are on (a profile may have
turned them off) and registers the result types with them explicitly. The `%layerlens`
line magic talks to the daemon through a client of its own:

    %layerlens                                   the daemon's models as a table
    %layerlens models
    %layerlens summary MODEL [--input-shape 1,1,8,8] [--depth N]
    %layerlens connect [ADDR] [--token TOKEN] [--timeout SECONDS]
                                                 use another daemon from now on
"""

import argparse
import shlex

import layerlens
from layerlens._results import ActivationReport, Attribution, Comparison, Graph, ModelList, ParameterReport, Prediction, SanityCheck, Summary

_MIME_TYPES = ("text/html", "image/png", "image/svg+xml")
# (mime type, class, method name) registered with IPython's formatters.
_FORMATTERS = (
    ("text/html", Summary, "_repr_html_"),
    ("text/html", ModelList, "_repr_html_"),
    ("text/html", Attribution, "_repr_html_"),
    ("image/png", Attribution, "_repr_png_"),
    ("image/svg+xml", Attribution, "_repr_svg_"),
    ("text/html", ParameterReport, "_repr_html_"),
    ("image/png", ParameterReport, "_repr_png_"),
    ("text/html", ActivationReport, "_repr_html_"),
    ("image/png", ActivationReport, "_repr_png_"),
    ("text/html", Prediction, "_repr_html_"),
    ("text/html", SanityCheck, "_repr_html_"),
    ("image/png", SanityCheck, "_repr_png_"),
    ("image/svg+xml", SanityCheck, "_repr_svg_"),
    ("text/html", Comparison, "_repr_html_"),
    ("image/png", Comparison, "_repr_png_"),
    ("image/svg+xml", Comparison, "_repr_svg_"),
    ("image/png", Graph, "_repr_png_"),
    ("image/svg+xml", Graph, "_repr_svg_"),
)


class _MagicState:
    """The magic's own client, made on first use so that loading never touches the network."""

    client = None

    @classmethod
    def get_client(cls):
        if cls.client is None:
            cls.client = layerlens.connect()
        return cls.client


class _UsageParser(argparse.ArgumentParser):
    """argparse that reports bad magic arguments as IPython usage errors instead of exiting."""

    def error(self, message):
        from IPython.core.error import UsageError

        raise UsageError(f"%layerlens: {message}\n{self.format_usage()}")

    def exit(self, status=0, message=None):
        from IPython.core.error import UsageError

        raise UsageError(message or self.format_usage())


def _parser():
    parser = _UsageParser(prog="%layerlens", description="Show what layerlensd holds.", add_help=True)
    # add_subparsers makes the subcommand parsers of the parser's own class, so they too
    # raise UsageError.
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("models", help="list the stored models")
    summary = commands.add_parser("summary", help="the module tree of a model")
    summary.add_argument("model", help="id, id prefix or name")
    summary.add_argument("--input-shape", help="shape of one input, e.g. 1,3,224,224")
    summary.add_argument("--depth", type=int, help="leave out rows deeper than this")
    connect = commands.add_parser("connect", help="use another daemon")
    connect.add_argument("addr", nargs="?", help="e.g. http://127.0.0.1:7533; default LAYERLENS_ADDR")
    connect.add_argument("--token", help="default LAYERLENS_TOKEN")
    connect.add_argument("--timeout", type=float, help="seconds allowed for each call; default no limit")
    return parser


def layerlens_magic(line):
    """%layerlens [models | summary MODEL [--input-shape S] [--depth N] | connect [ADDR]]"""
    args = _parser().parse_args(shlex.split(line))
    if args.command in (None, "models"):
        return _MagicState.get_client().models()
    if args.command == "summary":
        input_shape = [int(dim) for dim in args.input_shape.split(",")] if args.input_shape else None
        return _MagicState.get_client().model(args.model).summary(input_shape=input_shape, depth=args.depth)
    if args.command == "connect":
        if _MagicState.client is not None:
            _MagicState.client.close()
        _MagicState.client = layerlens.connect(args.addr, token=args.token, timeout=args.timeout)
        print(f"%layerlens now talks to {_MagicState.client.address}")
        return None
    raise AssertionError(f"unhandled %layerlens command {args.command}")


def _formatter_function(method_name):
    return lambda value: getattr(value, method_name)()


def load_ipython_extension(ipython):
    formatters = ipython.display_formatter.formatters
    for mime in _MIME_TYPES:
        formatters[mime].enabled = True
    for mime, cls, method_name in _FORMATTERS:
        formatters[mime].for_type(cls, _formatter_function(method_name))
    ipython.register_magic_function(layerlens_magic, magic_kind="line", magic_name="layerlens")


def unload_ipython_extension(ipython):
    formatters = ipython.display_formatter.formatters
    for mime, cls, _method_name in _FORMATTERS:
        formatters[mime].pop(cls, None)
    ipython.magics_manager.magics["line"].pop("layerlens", None)
    if _MagicState.client is not None:
        _MagicState.client.close()
        _MagicState.client = None

"""The `minillm` command (also `python -m minillm`)."""
import argparse
import platform
import sys


def info(_args):
    import numpy as np

    from . import __version__, backends
    print(f"minillm {__version__}  python {platform.python_version()}  numpy {np.__version__}")
    for name, state in backends.status().items():
        print(f"  backend {name:9s} {state}")


def demo(args):
    from .demo import run
    run(steps=args.steps)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minillm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions and which backends run here").set_defaults(fn=info)
    p = commands.add_parser("demo", help="the main job: train a small model and watch the loss fall")
    p.add_argument("--steps", type=int, default=300)
    p.set_defaults(fn=demo)
    args = parser.parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``polygen fit …``: coefficient design that writes a spec (to ``-o FILE`` or stdout) and reports on stderr."""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path


def _fraction(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"p must be a fraction such as 1/2, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"p must satisfy 0 < p < 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _command(args: argparse.Namespace) -> str:
    """The command line that regenerates this spec (without -o)."""
    parts = ["polygen fit", args.fit_command]
    for key, value in vars(args).items():
        if key in ("func", "fit_command", "output", "command") or value is None:
            continue
        parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)


def _emit(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def cmd_minimax(args: argparse.Namespace) -> int:
    from polygen.fit.minimax import format_summary, minimax

    design = minimax(args.degree, args.steps, args.lower, cushion=args.cushion, safety=args.safety)
    name = args.name or f"polar_express_d{args.degree}_{args.steps}"
    print(format_summary(design), file=sys.stderr)
    _emit(design.to_toml(name, command=_command(args)), args.output)
    return 0


def cmd_ifnso(args: argparse.Namespace) -> int:
    from polygen.fit.ifnso import fit_ifnso, format_summary

    design = fit_ifnso(N=args.N, steps=args.steps_adam, seed=args.seed, lr=args.lr)
    print(format_summary(design), file=sys.stderr)
    _emit(design.to_toml(args.name or f"ifnso_{args.N}", command=_command(args)), args.output)
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from polygen.fit.power import fit_power, format_summary

    design = fit_power(args.p, steps=args.steps, lower=args.lower, fit_lower=args.fit_lower, accuracy=args.accuracy,
                       starts=args.starts, maxfev=args.maxfev)
    print(format_summary(design), file=sys.stderr)
    name = args.name or f"muonp_{args.p.numerator}_{args.p.denominator}"
    _emit(design.to_toml(name, command=_command(args)), args.output)
    return 0


def add_fit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``fit`` with the sub-subcommands ``minimax``, ``ifnso`` and ``power`` on ``subparsers``."""
    from polygen.fit.minimax import DEFAULT_CUSHION, DEFAULT_SAFETY

    fit = subparsers.add_parser("fit", help="coefficient design: write a spec",
                                description="Design coefficients and write a spec (stdout or -o FILE); "
                                            "a human-readable summary goes to stderr.")
    sub = fit.add_subparsers(dest="fit_command", metavar="{minimax,ifnso,power}")
    sub.required = True

    p = sub.add_parser("minimax", help="Polar Express greedy minimax odd polynomials (polar factor)")
    p.add_argument("--degree", type=int, default=5, help="odd degree of every step (default 5)")
    p.add_argument("--steps", type=int, required=True, help="number of steps")
    p.add_argument("--lower", type=_positive_float, required=True, help="smallest normalized singular value")
    p.add_argument("--cushion", type=float, default=DEFAULT_CUSHION, help=f"(default {DEFAULT_CUSHION})")
    p.add_argument("--safety", type=float, default=DEFAULT_SAFETY, help=f"(default {DEFAULT_SAFETY})")
    p.add_argument("--name", help="spec name (default polar_express_d<degree>_<steps>)")
    p.add_argument("-o", "--output", help="write the spec here instead of stdout")
    p.set_defaults(func=cmd_minimax)

    p = sub.add_parser("ifnso", help="IFNSO: learn the coefficients of one high-degree polynomial (Adam)")
    p.add_argument("--N", type=int, default=14, help="polynomial depth N (default 14)")
    p.add_argument("--steps-adam", type=int, default=20000, help="Adam steps (default 20000, as the paper)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="spec name (default ifnso_<N>)")
    p.add_argument("-o", "--output", help="write the spec here instead of stdout")
    p.set_defaults(func=cmd_ifnso)

    p = sub.add_parser("power", help="Muon^p: per-step damped-Newton coefficients for U S^p V^T")
    p.add_argument("--p", type=_fraction, required=True, help="the power, a fraction r/q in (0, 1), e.g. 1/2")
    p.add_argument("--steps", type=int, default=6, help="number of steps (default 6)")
    p.add_argument("--lower", type=_positive_float, default=1e-3, help="domain [lower, 1] (default 1e-3)")
    p.add_argument("--fit-lower", type=_positive_float, default=None,
                   help="fit the worst relative error on [FIT_LOWER, 1] (default: search for the lowest "
                        "left end that reaches --accuracy)")
    p.add_argument("--accuracy", type=_positive_float, default=1e-2, help="target for that search (default 1e-2)")
    p.add_argument("--starts", type=int, default=3, help="optimizer starting points (default 3)")
    p.add_argument("--maxfev", type=int, default=3000, help="Nelder-Mead evaluations per start (default 3000)")
    p.add_argument("--name", help="spec name (default muonp_<r>_<q>)")
    p.add_argument("-o", "--output", help="write the spec here instead of stdout")
    p.set_defaults(func=cmd_power)

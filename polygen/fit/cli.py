"""``polygen fit …``: coefficient design that writes a spec (to ``-o FILE`` or stdout) and reports on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
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
        if key in ("func", "fit_command", "output", "command") or value is None or value is False:
            continue
        parts.append(f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}"))
    return " ".join(parts)


def _checked(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A design's own argument checks (ValueError: r < 1, an empty domain, a malformed term) as a one-line
    usage error with exit status 2, as argparse reports its own, not a traceback."""
    def run(args: argparse.Namespace) -> int:
        try:
            return cmd(args)
        except (ValueError, RuntimeError) as e:  # RuntimeError: no design reaches the asked accuracy
            print(f"polygen fit {args.fit_command}: error: {e}", file=sys.stderr)
            return 2
    return run


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
    if args.per_step:
        return _cmd_power_per_step(args)
    from polygen.fit.power import fit_power, format_summary

    design = fit_power(args.p, steps=args.steps, lower=args.lower, fit_lower=args.fit_lower, accuracy=args.accuracy,
                       starts=args.starts, maxfev=args.maxfev)
    print(format_summary(design), file=sys.stderr)
    name = args.name or f"muonp_{args.p.numerator}_{args.p.denominator}"
    _emit(design.to_toml(name, command=_command(args)), args.output)
    return 0


def _cmd_power_per_step(args: argparse.Namespace) -> int:
    """``--per-step``: a richer odd form, new coefficients every step, fitted scale-free (fit.power)."""
    from polygen.fit.power import fit_power_per_step, format_per_step_summary, term_form

    fit_lower = 1e-2 if args.fit_lower is None else args.fit_lower
    form = term_form(args.p, args.terms)
    design = fit_power_per_step(args.p, steps=args.steps, lower=args.lower, fit_lower=fit_lower,
                                terms=form.terms_text, starts=args.starts, seed=args.seed, iters=args.iters)
    print(format_per_step_summary(design), file=sys.stderr)
    name = args.name or f"muonp_{args.p.numerator}_{args.p.denominator}_fit"
    command = (f"polygen fit power --p {args.p} --per-step --steps {args.steps} --lower {args.lower:g} "
               f"--fit-lower {fit_lower:g} --terms {form.terms_text} --starts {args.starts} --seed {args.seed}"
               + (f" --iters {args.iters}" if args.iters != 200 else "")
               + (f" --name {args.name}" if args.name else ""))
    _emit(design.to_toml(name, command=command), args.output)
    return 0


def _degrees(text: str) -> tuple[int, ...]:
    try:
        degs = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"degrees must be a comma-separated list such as 1,2; got {text!r}") from None
    if not degs or any(not 1 <= d <= 3 for d in degs):
        raise argparse.ArgumentTypeError(f"each degree must be 1, 2 or 3; got {text!r}")
    return degs


def cmd_root(args: argparse.Namespace) -> int:
    from polygen.fit.roots import (
        DEFAULT_CONDITIONING,
        DEFAULT_SAFETY,
        DEFAULT_SPREAD,
        DEFAULT_TOLERANCE,
        design_roots,
        format_summary,
    )

    design = design_roots(args.r, args.lower, args.upper,
                          tolerance=args.tolerance or DEFAULT_TOLERANCE,
                          conditioning=args.conditioning or DEFAULT_CONDITIONING,
                          spread=args.spread or DEFAULT_SPREAD,
                          safety=args.safety or DEFAULT_SAFETY, degrees=_degrees(args.degrees or "1,2,3"))
    print(format_summary(design), file=sys.stderr)
    _emit(design.to_toml(args.name or f"inv_root_{args.r}_designed", command=_command(args)), args.output)
    return 0


def add_fit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``fit`` with the sub-subcommands ``minimax``, ``ifnso`` and ``power`` on ``subparsers``."""
    from polygen.fit.minimax import DEFAULT_CUSHION, DEFAULT_SAFETY

    fit = subparsers.add_parser("fit", help="coefficient design: write a spec",
                                description="Design coefficients and write a spec (stdout or -o FILE); "
                                            "a human-readable summary goes to stderr.")
    sub = fit.add_subparsers(dest="fit_command", metavar="{minimax,ifnso,power,root}")
    sub.required = True

    p = sub.add_parser("minimax", help="Polar Express greedy minimax odd polynomials (polar factor)")
    p.add_argument("--degree", type=int, default=5, help="odd degree of every step (default 5)")
    p.add_argument("--steps", type=int, required=True, help="number of steps")
    p.add_argument("--lower", type=_positive_float, required=True, help="smallest normalized singular value")
    p.add_argument("--cushion", type=float, default=DEFAULT_CUSHION, help=f"(default {DEFAULT_CUSHION})")
    p.add_argument("--safety", type=float, default=DEFAULT_SAFETY, help=f"(default {DEFAULT_SAFETY})")
    p.add_argument("--name", help="spec name (default polar_express_d<degree>_<steps>)")
    p.add_argument("-o", "--output", help="write the spec here instead of stdout")
    p.set_defaults(func=_checked(cmd_minimax))

    p = sub.add_parser("ifnso", help="IFNSO: learn the coefficients of one high-degree polynomial (Adam)")
    p.add_argument("--N", type=int, default=14, help="polynomial depth N (default 14)")
    p.add_argument("--steps-adam", type=int, default=20000, help="Adam steps (default 20000, as the paper)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="spec name (default ifnso_<N>)")
    p.add_argument("-o", "--output", help="write the spec here instead of stdout")
    p.set_defaults(func=_checked(cmd_ifnso))

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
    p.add_argument("--per-step", action="store_true",
                   help="fit a richer odd form (--terms) with new coefficients every step, scale-free (the "
                        "output is unit RMS) on [FIT_LOWER, 1] (default 1e-2), stable on [LOWER, 1]")
    p.add_argument("--terms", default=None,
                   help="with --per-step: the odd monomials of the update, e.g. 'y,y**3,x' (default: every "
                        "term the published step's matmuls pay for, per p)")
    p.add_argument("--seed", type=int, default=0, help="with --per-step: seed of the random starts (default 0)")
    p.add_argument("--iters", type=int, default=200,
                   help="with --per-step: L-BFGS iterations per sharpness level (default 200)")
    p.add_argument("--name", help="spec name (default muonp_<r>_<q>, with --per-step muonp_<r>_<q>_fit)")
    p.add_argument("-o", "--output", help="write the spec here instead of stdout")
    p.set_defaults(func=_checked(cmd_power))

    # options without a default here (None) stay out of the regenerating command a spec records
    p = sub.add_parser("root", help="inverse roots A^(-1/r): a designed coupled iteration (per-step minimax t_k(M))")
    p.add_argument("--r", type=int, required=True, help="the root r of A^(-1/r)")
    p.add_argument("--lower", type=_positive_float, required=True,
                   help="smallest eigenvalue of A/s, s = 2||A||_F/(r+1) (1e-6 covers kappa 1e4 at n 4096)")
    p.add_argument("--upper", type=_positive_float, help="largest eigenvalue of A/s (default (r+1)/2)")
    p.add_argument("--tolerance", type=_positive_float, help="target |m_K - 1| on the domain (default 4e-6)")
    p.add_argument("--conditioning", type=_positive_float,
                   help="bound on (sum |terms|)/t of every step, for float32 rounding (default 10)")
    p.add_argument("--spread", type=_positive_float,
                   help="bound on max t / min t of every step on its interval, for float32 rounding (default 4)")
    p.add_argument("--safety", type=_positive_float, help="interval widening of all but the last step (1.01)")
    p.add_argument("--degrees", help="step degrees the search may use, e.g. 1,2 (default 1,2,3)")
    p.add_argument("--name", help="spec name (default inv_root_<r>_designed)")
    p.add_argument("-o", "--output", help="write the spec here instead of stdout")
    p.set_defaults(func=_checked(cmd_root))

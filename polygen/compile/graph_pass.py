"""``torch.compile(fn, backend="polygen")`` and ``PolygenPass``, Inductor's post-grad pass that does the work.

The backend is Inductor with one more post-grad pass, appended to any the user installed: in inference graphs
(optimizer steps run under no_grad) it recovers each polynomial iteration (polygen.compile.recover), writes it
as a spec and parses it like any other, checks it with a numerical witness, gates the plan on accuracy, and
replaces the region by one ``polygen::recovered`` call. Training graphs and every region with any doubt are
left as they are, so their output is what plain Inductor produces.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable
from fractions import Fraction
from importlib.resources import files
from typing import Any, cast

import torch
from torch._inductor.custom_graph_pass import CustomInferenceAwareGraphPass, get_custom_graph_passes
from torch.fx import Graph, Node

from polygen.compile.recover import Coeffs, Interpreter, Region
from polygen.compile.witness import witness

OPTION_PREFIX = "polygen."
OPTIONS = {"backend": "auto", "verify": True, "accuracy": "guard", "report": None}
ACCURACY = ("guard", "fastest", "direct")  # guard: within 2× the user's loop's error, else the direct plan


def _term(c: Fraction, power: int) -> str:
    num = f"{c.numerator}" if c.denominator == 1 else f"({c.numerator}/{c.denominator})"
    return num if power == 0 else f"{num}*x" if power == 1 else f"{num}*x**{power}"


def spec_text_for(steps: list[Coeffs], dtype: torch.dtype) -> str:
    """A spec of the recovered steps: the input is the user's normalized seed (norm = none), each step's odd
    polynomial as exact rationals of the graph's floats; consecutive equal steps become one repeated step."""
    digest = hashlib.sha256(repr([[str(c) for c in s] for s in steps]).encode()).hexdigest()[:12]
    lines = [f'name = "recovered_{digest}"',
             f'description = "an iteration recovered by polygen.compile: {len(steps)} steps ({dtype})"',
             'target = "polar"', 'domain = ["1e-3", "1"]', "", "[input]", 'kind = "rectangular"', 'norm = "none"', "",
             "[variables.x]", 'kind = "rectangular"', 'init = "g"']
    i = 0
    while i < len(steps):
        j = i
        while j + 1 < len(steps) and steps[j + 1] == steps[i]:
            j += 1
        expr = " + ".join(_term(c, p) for p, c in enumerate(steps[i]) if c) or "0*x"
        lines += ["", "[[steps]]", f"repeat = {j - i + 1}", f'update = {{ x = "{expr}" }}']
        i = j + 1
    lines += ["", "[output]", 'var = "x"', "", "[verify]", 'expect = "none"', ""]
    return "\n".join(lines)


def _options(options: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(polygen's options, the rest for Inductor)."""
    ours, rest = dict(OPTIONS), {}
    for k, v in (options or {}).items():
        if k.startswith(OPTION_PREFIX):
            name = k[len(OPTION_PREFIX):]
            if name not in OPTIONS:
                raise ValueError(f"unknown polygen option {k!r}; known: {sorted(OPTION_PREFIX + o for o in OPTIONS)}")
            ours[name] = v
        else:
            rest[k] = v
    if ours["backend"] not in ("auto", "torch", "triton"):
        raise ValueError(f"polygen.backend must be auto, torch or triton; got {ours['backend']!r}")
    if ours["accuracy"] not in ACCURACY:
        raise ValueError(f"polygen.accuracy must be one of {ACCURACY}; got {ours['accuracy']!r}")
    return ours, rest


def _pass_sources_hash() -> str:
    from polygen import __version__
    from polygen.runtime.compiler_key import compiler_key

    h = hashlib.sha256(f"{__version__}\0{compiler_key()}".encode())
    for name in sorted(p.name for p in files("polygen.compile").iterdir() if p.name.endswith(".py")):
        h.update((files("polygen.compile") / name).read_bytes())
    return h.hexdigest()


class PolygenPass(CustomInferenceAwareGraphPass):
    """The post-grad pass: install it as ``torch._inductor.config.post_grad_custom_pre_pass`` (alone or in a
    list with others) to use polygen under ``backend="inductor"``; ``backend="polygen"`` does so itself."""

    def __init__(self, backend: str = "auto", verify: bool = True, accuracy: str = "guard",
                 report: Callable[[list[Region]], None] | None = None, rewrite: bool = True):
        self.options: dict[str, Any] = {"backend": backend, "verify": verify, "accuracy": accuracy}
        self.report = report
        self.rewrite = rewrite
        self.regions: list[Region] = []

    def uuid(self) -> str:
        """Changes with polygen's version, compiler sources, templates, cost constants (the compiler key) and
        this package's sources, and with the options: an FX graph cache hit never serves a stale plan."""
        return hashlib.sha256(f"{_pass_sources_hash()}\0{sorted(self.options.items())}\0{self.rewrite}".encode()
                              ).hexdigest()

    def __call__(self, graph: Graph, is_inference: bool = True) -> None:
        if not is_inference:
            return  # forward/backward pairs of training graphs are left alone
        regions = Interpreter(graph).run()
        for region in regions:
            if region.status == "recoverable":
                self._settle(region)
        for group in stacks(graph, [r for r in regions if r.status == "rewritten"]):
            for region in group:
                region.stacked = len(group)
                region.reason = "" if self.rewrite else "would be rewritten (explain)"
            if self.rewrite:
                _replace(graph, group, self.options["backend"])
        self.regions.extend(regions)
        if self.report is not None:
            self.report(regions)

    def _settle(self, region: Region) -> None:
        """Parse, witness and plan a recoverable region: "rewritten" (to be replaced) or "refused" with a reason."""
        import polygen

        assert region.dtype is not None
        region.spec_text = spec_text_for(region.steps, region.dtype)
        try:
            polygen.parse_spec(region.spec_text, source="<recovered>")
        except polygen.PolygenError as e:
            region.status, region.reason = "refused", f"the recovered spec does not parse: {e}"
            return
        if self.options["verify"]:
            ok, err = witness(region)
            if not ok:
                region.status, region.reason = "refused", f"the numerical witness disagrees (relative error {err:.2e})"
                return
        region.plan = self._plan(region)
        if self._gains_nothing(region):
            region.status = "refused"
            region.reason = ("the direct plan in a 16-bit dtype on the CPU gains nothing over Inductor's own fusion "
                             "(bench/RESULTS.md §8): left to Inductor")
            return
        region.status, region.reason = "rewritten", ""

    def _gains_nothing(self, region: Region) -> bool:
        """A direct plan in bf16/fp16 on a CPU tensor: polygen blocks no m×m product there, while Inductor fuses
        the elementwise terms, so the rewrite would only lose (2048×2048 bf16: 0.69× Inductor)."""
        from polygen.compile.ops import function_for

        assert region.seed is not None and region.dtype is not None
        if region.dtype not in (torch.bfloat16, torch.float16) or region.seed.meta["val"].device.type != "cpu":
            return False
        plan = region.plan or function_for(region.spec_text, "torch").plan_for(region.shape[-2:], region.dtype)
        return plan == "direct"

    def _plan(self, region: Region) -> str:
        """The plan key: the cost model's choice at the region's shape and dtype, or the direct plan when the
        accuracy policy says so (polygen.compile.accuracy)."""
        from polygen.compile.accuracy import choose_plan

        return choose_plan(region, self.options["accuracy"])


def _stack_key(region: Region) -> tuple:
    """Regions of one key share a call. A CPU matrix of CPU_CHUNK_BYTES or more runs alone: polygen's CPU code
    takes such matrices one at a time anyway, and a stack only keeps every seed and output alive at once, whose
    fresh pages cost more than the call saves (24 × 1024×4096 bf16: 2.24 s stacked against 1.69 s one by one;
    24 × 128×512: 0.018 s against 0.041 s; bench/RESULTS.md §8)."""
    from polygen.runtime.tuning import CPU_CHUNK_BYTES

    assert region.seed is not None
    fake = region.seed.meta["val"]
    alone = fake.device.type == "cpu" and fake.size(-2) * fake.size(-1) * fake.element_size() >= CPU_CHUNK_BYTES
    return (region.spec_text, region.plan, tuple(fake.shape), fake.dtype, fake.device, id(region) if alone else 0)


def _descendants(nodes: list[Node], skip: set[Node]) -> set[Node]:
    seen: set[Node] = set()
    todo = [u for n in nodes for u in n.users if u not in skip]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(u for u in n.users if u not in skip)
    return seen


def _placement(group: list[Region], order: dict[Node, int]) -> tuple[Node, list[Node]] | None:
    """Where one call for the group goes: after its last seed, with the pure users of outputs computed before
    that seed moved after the call; None when a seed depends on another chain's output or such a user has a
    side effect."""
    seeds = [r.seed for r in group]
    outputs = [r.output for r in group]
    assert all(n is not None for n in seeds + outputs)
    internal = {n for r in group for n in r.nodes} - set(cast(list[Node], seeds))  # dies with the rewrite
    after = _descendants(cast(list[Node], outputs), internal)
    if after & set(cast(list[Node], seeds)):
        return None
    last = max(cast(list[Node], seeds), key=order.__getitem__)
    moved = sorted((n for n in after if order[n] < order[last]), key=order.__getitem__)
    if any(n.is_impure() for n in moved):
        return None
    return last, moved


def stacks(graph: Graph, regions: list[Region]) -> list[list[Region]]:
    """Rewritten regions grouped into batched calls: chains of one spec, plan, seed shape, dtype and device (on
    the CPU only matrices under CPU_CHUNK_BYTES, see _stack_key), in graph order, as long as one call after the
    group's last seed stays a topological order (a seed computed from another chain's output starts a new
    group)."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    by_key: dict[tuple, list[Region]] = {}
    for r in regions:
        by_key.setdefault(_stack_key(r), []).append(r)
    groups: list[list[Region]] = []
    for members in by_key.values():
        group: list[Region] = []
        for r in sorted(members, key=lambda r: order[cast(Node, r.seed)]):
            if group and _placement([*group, r], order) is None:
                groups.append(group)
                group = []
            group.append(r)
        groups.append(group)
    return sorted(groups, key=lambda g: order[cast(Node, g[0].seed)])


def _replace(graph: Graph, group: list[Region], backend: str) -> None:
    """One polygen call for the group (polygen::recovered for one chain, recovered_stack for more); each chain's
    output becomes its item of the call, transposed back for tall inputs."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    placed = _placement(group, order)
    assert placed is not None
    last, moved = placed
    spec_text, plan = group[0].spec_text, group[0].plan
    seeds = [cast(Node, r.seed) for r in group]
    fakes = [s.meta["val"] for s in seeds]
    mode = fakes[0].fake_mode
    with graph.inserting_after(last):
        if len(group) == 1:
            call = graph.call_function(torch.ops.polygen.recovered.default, (seeds[0], spec_text, plan, backend))
            with mode:
                call.meta["val"] = torch.ops.polygen.recovered.default(fakes[0], spec_text, plan, backend)
        else:
            call = graph.call_function(torch.ops.polygen.recovered_stack.default, (seeds, spec_text, plan, backend))
            with mode:
                call.meta["val"] = torch.ops.polygen.recovered_stack.default(fakes, spec_text, plan, backend)
    tail, results = call, []
    for i, region in enumerate(group):
        result = call
        if len(group) > 1:
            result = tail = _after(graph, tail, mode, operator.getitem, (call, i))
        if region.transposed:
            rank = fakes[i].dim()
            dims = list(range(rank - 2)) + [rank - 1, rank - 2]
            result = tail = _after(graph, tail, mode, torch.ops.aten.permute.default, (result, dims))
        results.append(result)
    for n in moved:
        tail.append(n)
        tail = n
    for region, result in zip(group, results):
        cast(Node, region.output).replace_all_uses_with(result, delete_user_cb=lambda user: user is not call)
    graph.eliminate_dead_code()


def _after(graph: Graph, node: Node, mode: Any, target: Any, args: tuple) -> Node:
    """A call inserted right after ``node``, with its fake value."""
    with graph.inserting_after(node):
        new = graph.call_function(target, args)
    with mode:
        new.meta["val"] = target(*[a.meta["val"] if isinstance(a, Node) else a for a in args])
    return new


def backend(gm: torch.fx.GraphModule, example_inputs: list[Any], options: dict[str, Any] | None = None,
            **kwargs: Any) -> Callable[..., Any]:
    """The ``torch.compile`` backend named "polygen" (an entry point of this package): Inductor plus PolygenPass.
    ``options`` keys starting with "polygen." are polygen's (backend, verify, accuracy, report); the rest go
    to Inductor as config patches."""
    from torch._inductor import config
    from torch._inductor.compile_fx import compile_fx

    ours, rest = _options(options)
    pass_ = PolygenPass(**ours)
    passes = list(get_custom_graph_passes(config.post_grad_custom_pre_pass)) + [pass_]
    patches = dict(rest, post_grad_custom_pre_pass=passes if len(passes) > 1 else pass_)
    compiled: Any = compile_fx(gm, example_inputs, config_patches=patches)
    return cast(Callable[..., Any], compiled)


class _Explained(Exception):
    """Raised by explain's pass once it has recorded a graph's regions, so nothing compiled ever runs."""


def explain(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Region]:
    """One record per candidate region of the graphs ``fn(*args, **kwargs)`` compiles to, without running
    anything compiled: status ("rewritten": what the backend would do; or "refused"), reason, steps,
    coefficients, spec_text and plan. Works on functions and bound methods (``explain(opt.step)``). Code dynamo
    does not trace (a data-dependent branch in a loop) gets a "refused" record with dynamo's reason; dynamo
    runs such a frame as plain Python, so that part of ``fn`` does run."""
    import torch._dynamo

    recorder = PolygenPass(rewrite=False)

    class _Capture(PolygenPass):
        """Records the regions with the recorder, then stops the compile before anything can run."""

        def __call__(self, graph: Graph, is_inference: bool = True) -> None:
            recorder(graph, is_inference)
            raise _Explained

    def record(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        from torch._inductor.compile_fx import compile_fx

        compiled: Any = compile_fx(gm, example_inputs, config_patches={"post_grad_custom_pre_pass": _Capture(),
                                                                       "fx_graph_cache": False})
        return cast(Callable[..., Any], compiled)

    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    before = {k: dict(counters[k]) for k in _BREAKS}
    compiled = torch.compile(fn, backend=record)
    try:
        with torch.no_grad():
            compiled(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - dynamo wraps the backend's exception
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, _Explained):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
    breaks = [msg for k in _BREAKS for msg, n in counters[k].items() if n > before[k].get(msg, 0)]
    return recorder.regions + [Region("refused", f"dynamo graph break: {msg.splitlines()[0]} (the code there never "
                                                 "reaches the pass and runs as torch.compile leaves it)")
                               for msg in breaks]


# dynamo's counters of what it did not trace (a data-dependent branch, unsupported code): explain reports them
_BREAKS = ("graph_break", "unimplemented")

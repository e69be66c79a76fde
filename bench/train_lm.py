"""Train a small GPT-style character-level LM on the Python standard library's own source with AdamW,
torch.optim.Muon, polygen's Muon (muon_ns5, polar_express, prism_polar), MuonP (p = 1/3) and Shampoo.

Data: the ``.py`` files of this interpreter's standard library (``sysconfig`` "stdlib"; site-packages and
test directories left out), shuffled with a fixed seed and split **by file**: every 10th file is validation.
Tokens are the files' UTF-8 bytes (vocabulary 256; the stdlib is almost all ASCII, so bytes are characters).

Model (full size): 4 pre-LN transformer blocks, width 256, 4 heads, context 128, learned positions, untied
lm_head (≈3.3M parameters). Token budget: 1200 steps × 16 sequences × 128 = 2.5M tokens per run. On the
2-core CPU this project develops on, a step takes ≈0.3 s when the machine is idle, so a run takes ≈7 minutes
(all seven ≈1 hour; Shampoo and prism_polar somewhat longer), hence the modest size; ``--quick`` (2 blocks,
width 64, context 64, 60 steps × 8 sequences) runs all optimizers in about 2 minutes and only checks that
everything works (its timings are noise on a shared machine).

Every run uses the same seed (same initial weights) and the same data order (batch offsets drawn once from a
seeded generator), a linear warm-up over 5 % of the steps and cosine decay to 10 % of the peak lr (one
``LambdaLR`` on the one optimizer object — the Muon runs are a single :class:`polygen.optim.Mixed` optimizer:
hidden matrices to Muon, embeddings / lm_head / norms / biases to AdamW, split by
:func:`polygen.optim.split_params`). Shampoo preconditions every parameter itself (1-D ones diagonally).

Learning rates (``LRS``) come from the sweep in ``SWEEP`` (``--sweep`` reruns it: each optimizer at each lr
of its grid; the config is the current one, so ``--sweep`` without ``--quick`` sweeps at full size). The
recorded values are the best final validation loss of a ``--quick --sweep`` run (see SWEEP_RESULT).

Outputs: out/train_lm.png (validation loss vs tokens, all runs), out/train_lm.md (the markdown table printed at
the end: final validation loss, wall time, share of step time spent in ``optimizer.step()``),
out/train_lm.json (the curves).

    .venv/bin/python bench/train_lm.py --quick
    .venv/bin/python bench/train_lm.py                        # full size (the lead runs this one)
    .venv/bin/python bench/train_lm.py --only adamw polygen_muon_ns5 --steps 300
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polygen  # noqa: E402
from polygen.optim import Mixed, MuonWithAdamW, Shampoo, split_params  # noqa: E402

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency; keep the script usable without it
    def tqdm(it, **_):  # type: ignore[no-redef]
        return it


# --- configuration --------------------------------------------------------------------------------------------

@dataclass
class Config:
    n_layer: int = 4
    d_model: int = 256
    n_head: int = 4
    context: int = 128
    batch: int = 16
    steps: int = 1200
    eval_every: int = 100
    eval_batches: int = 16
    max_train_bytes: int = 8_000_000
    max_val_bytes: int = 800_000
    seed: int = 0


QUICK = Config(n_layer=2, d_model=128, n_head=4, context=64, batch=16, steps=200, eval_every=25, eval_batches=8,
               max_train_bytes=2_000_000, max_val_bytes=200_000)

ADAMW_SIDE_LR = 3e-3  # AdamW's lr for embeddings / head / vectors in the Muon-family runs (fixed, not swept)
WEIGHT_DECAY = 0.01
# Sweep grids (peak lr). Muon family: "original" lr adjustment (lr·√max(1, m/n)); MuonP follows the same
# convention (update RMS lr/√fan_in, polygen.optim.muon_p); Shampoo's step is grafted to Adam's size.
SWEEP = {
    "adamw": [3e-4, 1e-3, 3e-3, 1e-2],
    "torch_muon": [0.005, 0.01, 0.02, 0.05],
    "polygen_muon_ns5": [0.005, 0.01, 0.02, 0.05],
    "polygen_polar_express": [0.005, 0.01, 0.02, 0.05],
    "polygen_prism_polar": [0.005, 0.01, 0.02, 0.05],
    "muonp_1_3": [0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05],
    "muonp_1_3_fit": [0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05],
    "shampoo": [1e-3, 3e-3, 1e-2],
}
# Best of SWEEP by final validation loss in `--quick --sweep` on the 2-core dev CPU (SWEEP_RESULT). The quick
# model is much smaller than the full one: rerun `--sweep` at full size when the machine is free and update both.
LRS = {
    "adamw": 1e-3,
    "torch_muon": 0.02,
    "polygen_muon_ns5": 0.02,
    "polygen_polar_express": 0.02,
    "polygen_prism_polar": 0.02,
    "muonp_1_3": 3e-3,
    "muonp_1_3_fit": 3e-3,  # not swept: the published schedule's lr, for a like-for-like comparison
    "shampoo": 3e-3,
}
SWEEP_RESULT = """
--quick --sweep (2 layers, width 128, context 64, 200 steps x 16 x 64 tokens), final validation loss:
  adamw                  3e-4 2.740   1e-3 2.424   3e-3 2.817   1e-2 2.753
  torch_muon             5e-3 2.287   1e-2 2.203   2e-2 2.133   5e-2 2.170
  polygen_muon_ns5       5e-3 2.288   1e-2 2.204   2e-2 2.130   5e-2 2.163
  polygen_polar_express  5e-3 2.280   1e-2 2.193   2e-2 2.121   5e-2 2.208
  polygen_prism_polar    5e-3 2.282   1e-2 2.199   2e-2 2.133   5e-2 2.215
  muonp_1_3              1e-3 2.374   2e-3 2.335   3e-3 2.319   5e-3 2.483   1e-2 2.694   2e-2 2.758   5e-2 2.818
  shampoo                1e-3 2.323   3e-3 2.252   1e-2 2.308
MuonP's unit-RMS U S^(1/3) Vᵀ has a larger spectral norm than Muon's U Vᵀ at the same RMS, hence its ~7x smaller lr;
an exact-SVD U S^(1/3) Vᵀ in its place trains the same (checked while writing this), so the gap is p's, not the
spec's iteration.
"""

LABELS = {
    "adamw": "AdamW",
    "torch_muon": "torch.optim.Muon + AdamW",
    "polygen_muon_ns5": "polygen Muon (muon_ns5) + AdamW",
    "polygen_polar_express": "polygen Muon (polar_express) + AdamW",
    "polygen_prism_polar": "polygen Muon (prism_polar) + AdamW",
    "muonp_1_3": "polygen MuonP (p=1/3, published muonp_1_3) + AdamW",
    "muonp_1_3_fit": "polygen MuonP (p=1/3, fitted muonp_1_3_fit) + AdamW",
    "shampoo": "polygen Shampoo (inv_root_4)",
}


def make_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=WEIGHT_DECAY)
    adamw_kw = dict(adamw_lr=ADAMW_SIDE_LR, adamw_betas=(0.9, 0.95), adamw_weight_decay=WEIGHT_DECAY)
    if name == "torch_muon":
        muon, rest = split_params(model)
        return Mixed(torch.optim.Muon([p for _, p in muon], lr=lr, weight_decay=WEIGHT_DECAY),
                     torch.optim.AdamW([p for _, p in rest], lr=ADAMW_SIDE_LR, betas=(0.9, 0.95),
                                       weight_decay=WEIGHT_DECAY))
    if name.startswith("polygen_"):
        return MuonWithAdamW(model, lr=lr, weight_decay=WEIGHT_DECAY, spec=name.removeprefix("polygen_"), **adamw_kw)
    if name.startswith("muonp_"):
        return MuonWithAdamW(model, optimizer="muonp", lr=lr, weight_decay=WEIGHT_DECAY, spec=name, **adamw_kw)
    if name == "shampoo":
        return Shampoo(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=WEIGHT_DECAY,
                       precondition_frequency=10, max_preconditioner_dim=512, epsilon=1e-10)
    raise ValueError(f"unknown optimizer {name!r}")


def available_runs() -> list[str]:
    specs = set(polygen.list_specs())
    need = {"polygen_muon_ns5": "muon_ns5", "polygen_polar_express": "polar_express",
            "polygen_prism_polar": "prism_polar", "muonp_1_3": "muonp_1_3", "muonp_1_3_fit": "muonp_1_3_fit",
            "shampoo": "inv_root_4"}
    return [n for n in LABELS if need.get(n, "") in specs or n not in need]


# --- data -----------------------------------------------------------------------------------------------------

def load_corpus(cfg: Config) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(train bytes, validation bytes, #train files, #val files); split by file, fixed seed."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "__pycache__"}
    files = sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))
    random.Random(cfg.seed).shuffle(files)
    parts: dict[str, list[bytes]] = {"train": [], "val": []}
    sizes = {"train": 0, "val": 0}
    limit = {"train": cfg.max_train_bytes, "val": cfg.max_val_bytes}
    count = {"train": 0, "val": 0}
    for i, f in enumerate(files):
        split = "val" if i % 10 == 9 else "train"
        if sizes[split] >= limit[split]:
            if all(sizes[s] >= limit[s] for s in sizes):
                break
            continue
        try:
            data = f.read_bytes()
        except OSError:
            continue
        parts[split].append(data + b"\n\n")
        sizes[split] += len(data) + 2
        count[split] += 1

    def tensor(chunks: list[bytes]) -> torch.Tensor:
        return torch.frombuffer(bytearray(b"".join(chunks)), dtype=torch.uint8).long()

    return tensor(parts["train"]), tensor(parts["val"]), count["train"], count["val"]


# --- model ----------------------------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.fc_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, cfg: Config, vocab: int = 256) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_head) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, vocab, bias=False)
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("proj.weight") else 0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for blk in self.blocks:
            x = blk(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


# --- training -------------------------------------------------------------------------------------------------

def lr_lambda(steps: int) -> Callable[[int], float]:
    warm = max(1, steps // 20)

    def f(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        t = (s - warm) / max(1, steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def batches(data: torch.Tensor, offsets: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = offsets[:, None] + torch.arange(context + 1)[None, :]
    chunk = data[idx]
    return chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def evaluate(model: nn.Module, val: torch.Tensor, val_offsets: torch.Tensor, cfg: Config) -> float:
    model.eval()
    losses = [float(model(*batches(val, off, cfg.context))) for off in val_offsets]
    model.train()
    return sum(losses) / len(losses)


def train(name: str, lr: float, cfg: Config, train_data: torch.Tensor, val: torch.Tensor,
          position: int = 0) -> dict:
    g = torch.Generator().manual_seed(cfg.seed + 1)
    offsets = torch.randint(0, len(train_data) - cfg.context - 1, (cfg.steps, cfg.batch), generator=g)
    val_offsets = torch.linspace(0, len(val) - cfg.context - 2, cfg.eval_batches * cfg.batch).long()
    val_offsets = val_offsets.view(cfg.eval_batches, cfg.batch)
    torch.manual_seed(cfg.seed)
    model = GPT(cfg)
    opt = make_optimizer(name, model, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.steps))
    tokens_per_step = cfg.batch * cfg.context
    curve = [(0, evaluate(model, val, val_offsets, cfg))]
    t_total = t_opt = 0.0
    bar = tqdm(range(cfg.steps), desc=f"{name} lr={lr:g}", position=position, leave=True, dynamic_ncols=True,
               mininterval=2.0)
    loss = float("nan")
    done = 0
    for step in bar:
        x, y = batches(train_data, offsets[step], cfg.context)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_t = model(x, y)
        loss_t.backward()
        t1 = time.perf_counter()
        opt.step()
        t2 = time.perf_counter()
        sched.step()
        t_total += t2 - t0
        t_opt += t2 - t1
        loss = float(loss_t.detach())
        done = step + 1
        if not math.isfinite(loss):
            break
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            curve.append(((step + 1) * tokens_per_step, evaluate(model, val, val_offsets, cfg)))
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(train=f"{loss:.3f}", val=f"{curve[-1][1]:.3f}")
    return {"name": name, "label": LABELS[name], "lr": lr, "curve": curve, "final_val": curve[-1][1],
            "final_train": loss, "wall_s": t_total, "opt_share": t_opt / t_total if t_total else float("nan"),
            "ms_per_step": 1e3 * t_total / max(1, done)}


# --- reporting ------------------------------------------------------------------------------------------------

def table(results: list[dict], cfg: Config, n_params: int, files: tuple[int, int]) -> str:
    tokens = cfg.steps * cfg.batch * cfg.context
    lines = [
        f"Character-level GPT on the Python {sys.version.split()[0]} standard library ({files[0]} train / "
        f"{files[1]} validation files, split by file): {cfg.n_layer} layers, width {cfg.d_model}, context "
        f"{cfg.context}, {n_params / 1e6:.2f}M parameters, {tokens / 1e6:.2f}M tokens per run, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "",
        "| optimizer | peak lr | final val loss | wall s | ms / step | share of step in optimizer.step() |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['label']} | {r['lr']:g} | {r['final_val']:.4f} | {r['wall_s']:.1f} | "
                     f"{r['ms_per_step']:.0f} | {100 * r['opt_share']:.0f}% |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        xs, ys = zip(*r["curve"])
        ax.plot([x / 1e6 for x in xs], ys, marker=".", label=f"{r['label']} (lr {r['lr']:g})")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("validation loss (nats / byte)")
    ax.set_title(title)
    finals = [r["final_val"] for r in results if math.isfinite(r["final_val"])]
    if finals:
        ax.set_ylim(min(finals) - 0.2, max(r["curve"][0][1] for r in results) + 0.1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(results: list[dict], cfg: Config, n_params: int, files: tuple[int, int], out: Path, stem: str,
                  args: argparse.Namespace) -> str:
    text = table(results, cfg, n_params, files)
    best: dict[str, dict] = {}
    if args.sweep:
        for r in results:
            if r["name"] not in best or r["final_val"] < best[r["name"]]["final_val"]:
                best[r["name"]] = r
        text += "\n\nBest lr per optimizer: " + ", ".join(f"{k} {v['lr']:g}" for k, v in best.items())
    (out / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
    (out / f"{stem}.json").write_text(json.dumps({"config": asdict(cfg), "results": results}, indent=1),
                                      encoding="utf-8")
    plot(results if not args.sweep else list(best.values()), out / f"{stem}.png",
         f"char-level GPT on the stdlib ({'quick' if args.quick else 'full'})")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny model and budget: all runs in about 2 minutes")
    ap.add_argument("--sweep", action="store_true", help="run every lr of SWEEP instead of LRS")
    ap.add_argument("--only", nargs="+", choices=list(LABELS), help="a subset of the runs")
    ap.add_argument("--steps", type=int, help="override the number of steps")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--out", default="out", help="output folder (train_lm.png/.md/.json)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config(**asdict(QUICK)) if args.quick else Config()
    if args.steps:
        cfg.steps = args.steps
        cfg.eval_every = max(1, min(cfg.eval_every, cfg.steps // 4))
    names = [n for n in (args.only or available_runs()) if n in available_runs()]
    missing = sorted(set(args.only or LABELS) - set(names))
    if missing:
        print(f"skipping (spec not built in): {', '.join(missing)}")

    train_data, val, n_train, n_val = load_corpus(cfg)
    n_params = sum(p.numel() for p in GPT(cfg).parameters())
    print(f"data: {len(train_data) / 1e6:.2f}M train bytes ({n_train} files), {len(val) / 1e6:.2f}M validation "
          f"bytes ({n_val} files); model {n_params / 1e6:.2f}M parameters")
    runs = [(n, lr) for n in names for lr in (SWEEP[n] if args.sweep else [LRS[n]])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "train_lm_sweep" if args.sweep else "train_lm"
    results: list[dict] = []
    text = "(no runs)"
    for n, lr in runs:  # the table, curves and plot are rewritten after every run: a long job loses nothing
        results.append(train(n, lr, cfg, train_data, val))
        text = write_outputs(results, cfg, n_params, (n_train, n_val), out, stem, args)
    print()
    print(text)
    print(f"\nwrote {out / (stem + '.md')}, {out / (stem + '.png')}, {out / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The README's optimizer recipe runs as written (on a toy model) and the API lines it shows hold."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 12)
        self.hidden = nn.Linear(12, 12)
        self.norm = nn.LayerNorm(12)
        self.lm_head = nn.Linear(12, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm(torch.relu(self.hidden(self.embed(x)))))


def test_mixing_recipe_runs_and_trains(tmp_path, monkeypatch):
    block = next(b for b in python_blocks() if "MuonWithAdamW" in b)
    assert len(block.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randint(0, 16, (4,)), torch.randint(0, 16, (4,))) for _ in range(3)]
    scope = {"model": model, "batches": batches}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own documentation, not a spec
    assert (tmp_path / "opt.pt").exists()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert {"hidden.weight", "embed.weight", "lm_head.weight", "norm.weight"} <= changed
    opt = scope["opt"]
    assert opt.matrix is not None and opt.adamw is not None
    muon_params = {id(p) for g in opt.matrix.param_groups for p in g["params"]}
    assert id(model.hidden.weight) in muon_params and id(model.lm_head.weight) not in muon_params


def test_api_block_matches_the_library():
    import polygen

    plan = polygen.schedule(polygen.load_spec("muon_ns5"), shape=(1024, 4096), dtype=torch.float32, backend="torch")
    assert (plan.matmuls, plan.flops, plan.form) == (19, 39996882944, "gram")
    assert f'# 19, {plan.flops}, "gram"' in README


def test_every_fitted_table_has_its_regenerating_command_in_the_docs():
    """docs/regenerating.md lists, word for word, the `# Regenerate:` command of every built-in spec that has one."""
    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "regenerating.md").read_text()
    commands = {}
    for spec in sorted((root / "polygen" / "specs").glob("*.toml")):
        for line in spec.read_text().splitlines():
            if line.startswith("# Regenerate: "):
                commands[spec.stem] = line.removeprefix("# Regenerate: ")
    assert len(commands) == 8
    for name, command in commands.items():
        assert f"| `{name}` | `{command}` |" in doc, name

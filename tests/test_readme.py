"""Every Python block in README.md runs as written (dict-minimize's README examples did not)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int) -> None:
    source = BLOCKS[index]
    for framework in ("torch", "tensorflow", "jax"):
        if f"{framework}_api" in source or f"import {framework}" in source:
            pytest.importorskip(framework)
    exec(compile(source, f"README.md[block {index}]", "exec"), {"__name__": "readme"})


def test_readme_has_blocks_and_commands() -> None:
    text = README.read_text()
    assert len(BLOCKS) >= 2
    assert text.index("make demo") < 400 and text.index("make test") < 400

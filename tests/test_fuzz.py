"""The decoder's fuzz harness (vqzip/fuzz.py): seeded, resumable, and a short run with no crash, no
input over 2 s and none over 1 GB. The long run is benchmarks/fuzz_decoder.py."""
from __future__ import annotations

import json
import sys

import pytest

from vqzip import fuzz, zoo
from vqzip.coding import container
from vqzip.errors import FormatError


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return fuzz.seed_corpus()


def test_the_corpus_covers_models_versions_sizes_and_modes(corpus):
    headers = [container.parse_header(data)[0] for data in corpus]
    assert len(corpus) >= 40
    assert {h.version for h in headers} == set(container.VERSIONS)
    assert {h.mode for h in headers} == set(container.MODES)
    assert {(h.width, h.height) for h in headers} >= set(fuzz.SIZES)
    assert {zoo.load_model(name).model_id for name in zoo.shipped_models()} <= {h.model_id for h in headers}


def test_same_seed_same_inputs(corpus):
    keys = fuzz.checksum_keys()
    a, b = fuzz.Mutator(corpus, keys), fuzz.Mutator(list(corpus), dict(keys))
    first = [a.input(7, i) for i in range(300)]
    assert first == [b.input(7, i) for i in range(300)]
    assert [b.input(7, i) for i in range(150, 300)] == first[150:]  # any index alone: resumable anywhere
    assert first != [a.input(8, i) for i in range(300)]
    assert len({data for data, _ in first}) > 250
    assert sum("crc" in ops for _, ops in first) > 100  # about half reach the payload decoder


def test_outcomes_are_classed(corpus, monkeypatch):
    """VqzipError is a clean refusal; anything else is a crash, kept with its input for replay."""
    mutator = fuzz.Mutator(corpus, fuzz.checksum_keys())
    # this process's peak memory is the test session's (every model loaded so far), not an input's
    monkeypatch.setattr(fuzz, "BIG_MB", float("inf"))

    def decode(data: bytes) -> None:
        if data[-1] % 3 == 0:
            raise FormatError("refused")
        if data[-1] % 3 == 1:
            raise IndexError("boom")

    stats, left = fuzz.run_inputs(mutator, 0, range(60), decode)
    assert left == [] and stats.inputs == 60
    assert stats.outcomes["crash"] == len(stats.crashes) > 0 and stats.outcomes["refused"] > 0
    crash = stats.crashes[0]
    assert crash["error"] == "IndexError: boom"
    # the record keeps the input's first 4 kB; (seed, index) replays it whole
    assert mutator.input(0, crash["index"])[0].hex()[:8192] == crash["input"]
    assert fuzz.Stats.from_dict(json.loads(json.dumps(stats.to_dict()))).to_dict() == stats.to_dict()


def test_inputs_run_one_model_after_another(corpus, monkeypatch):
    """A chunk's inputs are grouped by the model their header names (each model loads about once), and
    an input that takes the worker over the memory bar hands back exactly the inputs it has not run."""
    mutator = fuzz.Mutator(corpus, fuzz.checksum_keys())
    monkeypatch.setattr(fuzz, "BIG_MB", float("inf"))
    seen: list[bytes] = []
    stats, left = fuzz.run_inputs(mutator, 3, range(200), lambda data: seen.append(data))
    models = [fuzz._model_order(data) for data in seen]
    switches = sum(a != b for a, b in zip(models, models[1:]))
    assert left == [] and len(seen) == 200 and switches == len(set(models)) - 1
    assert sorted(seen) == sorted(mutator.input(3, i)[0] for i in range(200))

    monkeypatch.setattr(fuzz, "BIG_MB", 0.0)
    stats, left = fuzz.run_inputs(mutator, 3, range(10, 30), lambda data: None)
    assert stats.inputs == 1 and len(stats.big) == 1
    assert sorted(left + [stats.big[0]["index"]]) == list(range(10, 30))


def test_each_inputs_peak_is_its_own(corpus, monkeypatch):
    """A worker keeps one model loaded at a time and measures each input's peak memory from that
    input's start: what the worker met before (other models, freed buffers) is not counted."""
    import numpy as np

    zoo._load.cache_clear()
    mutator = fuzz.Mutator(corpus, fuzz.checksum_keys())
    stats, _ = fuzz.run_inputs(mutator, 3, range(300))
    assert len({fuzz._model_order(mutator.input(3, i)[0])[:2] for i in range(300)}) > 2
    assert zoo._load.cache_info().currsize <= 1
    block = np.ones(300 << 17)  # 300 MB, touched, then freed
    before = fuzz._rss_mb()
    del block
    fuzz._start_peak()
    if sys.platform == "linux":  # elsewhere the peak is the process's whole peak
        assert fuzz._rss_mb() < before - 200


def test_short_run_no_crash_none_slow_none_big(corpus, tmp_path):
    """About 20 s of the campaign in one worker process, stopped and resumed half way through."""
    state = tmp_path / "state.json"
    logged: list[str] = []
    first = fuzz.campaign(10**9, seed=1, workers=1, state_path=state, chunk=100, seconds=7, corpus=corpus, log=logged.append)
    resumed = fuzz.campaign(10**9, seed=1, workers=1, state_path=state, chunk=100, seconds=7, corpus=corpus,
                            log=logged.append)
    stats = resumed["stats"]
    assert resumed["sessions"][0]["to"] == first["next_index"] == resumed["sessions"][1]["from"]
    assert stats["inputs"] == resumed["next_index"] > first["next_index"] >= 100
    assert stats["outcomes"].get("crash", 0) == 0, stats["crashes"][:3]
    assert stats["outcomes"].get("hang", 0) == 0 and not stats["slow"], stats["slow"][:3]
    assert not stats["big"] and stats["max_rss_mb"] < fuzz.BIG_MB
    assert stats["outcomes"].get("ok", 0) > 0 and stats["outcomes"].get("refused", 0) > 0
    assert json.loads(state.read_text())["next_index"] == resumed["next_index"]
    with pytest.raises(ValueError, match="another seed"):
        fuzz.campaign(10**9, seed=2, workers=1, state_path=state, seconds=0, corpus=corpus)

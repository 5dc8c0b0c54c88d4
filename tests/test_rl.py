"""Q-RAG training (qrag_cli.rl): hand-computed returns and rewards, soft value, rotation, a smoke run."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from qrag_cli.errors import IncompatibleError, InputError, OutputExistsError, TrainingError
from qrag_cli.rl import trainer as trainer_mod
from qrag_cli.rl.env import Episode
from qrag_cli.rl.qnet import rotate_t, twin_q
from qrag_cli.rl.returns import completion_reward, lambda_returns, soft_value
from qrag_cli.rl.state_io import load_state
from qrag_cli.search.positions import chunk_positions, exact_rotary_search, rotate
from qrag_cli.settings import TrainSettings

# --- lambda-returns, reward, soft value ------------------------------------------------------------


def test_lambda_returns_by_hand_three_steps_with_a_terminal_step():
    # steps 0, 1 of one episode (step 1 terminal), then step 2 of the next, bootstrapped from V(s_3).
    r = [0.0, 1.0, 0.0]
    done = [0, 1, 0]
    v_next = [0.5, 9.0, 0.8]  # V(s_1), V(s_2) (a new episode: ignored, m_1 = 0), V(s_3)
    gamma, lam = 0.9, 0.5
    g2 = 0.0 + 0.9 * 0.8  # = 0.72
    g1 = 1.0  # terminal: G = r
    g0 = 0.0 + 0.9 * ((1 - 0.5) * 0.5 + 0.5 * g1)  # = 0.9 * (0.25 + 0.5) = 0.675
    assert lambda_returns(r, done, v_next, gamma, lam) == pytest.approx([g0, g1, g2])
    assert lambda_returns(r, done, v_next, gamma, lam) == pytest.approx([0.675, 1.0, 0.72])
    # batched over envs (time first): the same per column
    two = lambda_returns(np.stack([r, r], 1), np.stack([done, done], 1), np.stack([v_next, v_next], 1), gamma, lam)
    assert two[:, 1] == pytest.approx([0.675, 1.0, 0.72])


def test_completion_reward_is_paid_once_when_the_support_is_complete():
    assert completion_reward([3], [3]) == 1.0  # one fact, one step: the minimum
    assert completion_reward([5, 3], [3, 5]) == 1.0  # two facts in two steps
    assert completion_reward([5, 9, 3], [3, 5]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert completion_reward([5, 9], [3, 5]) == 0.0  # incomplete
    assert completion_reward([5, 3, 9], [3, 5]) == 0.0  # already complete before this step
    assert completion_reward([], [3]) == 0.0


def test_soft_value_masks_before_taking_the_top_k():
    q = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.2])
    avail = torch.tensor([False] * 5 + [True, True])  # the reference's top-5-then-mask would leave nothing
    alpha = 0.1
    expected = alpha * np.log(np.exp(0.5 / alpha) + np.exp(0.2 / alpha))
    assert float(soft_value(q, avail, alpha)) == pytest.approx(expected, rel=1e-5)
    # top-5 of the available ones only
    avail = torch.ones(7, dtype=torch.bool)
    top5 = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert float(soft_value(q, avail, 1.0)) == pytest.approx(np.log(np.exp(top5).sum()), rel=1e-5)
    # nothing available: 0, never -inf
    assert float(soft_value(q, torch.zeros(7, dtype=torch.bool), alpha)) == 0.0


# --- positions and rotation ------------------------------------------------------------------------


def test_example_positions_of_12_chunks():
    ep = Episode(0, "q", [f"c{i}" for i in range(12)], [4], 6, retrieved=[4])
    assert ep.positions(True).astype(int).tolist() == [0, 6, 12, 18, 20, 22, 25, 27, 30, 32, 35, 38]


def test_torch_rotation_equals_numpy_rotate_and_keeps_the_norm():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 384)).astype(np.float32)
    p = chunk_positions(12, [4], integer=False)
    got = rotate_t(torch.from_numpy(x), torch.from_numpy(p)).numpy()
    np.testing.assert_allclose(got, rotate(x, p), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    # <s, R(p) a> = <R(-p) s, a>: what the inference search computes, per half too
    s = rng.standard_normal(384).astype(np.float32)
    q1, q2 = twin_q(torch.from_numpy(s), rotate_t(torch.from_numpy(x), torch.from_numpy(p)))
    np.testing.assert_allclose((q1 + q2).numpy(), np.array([rotate(s, -pi) @ xi for pi, xi in zip(p, x)]),
                               rtol=1e-4, atol=1e-4)


def test_greedy_never_picks_a_retrieved_chunk():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((12, 16)).astype(np.float32)
    s = vectors[3] * 10  # chunk 3 scores best by far
    retrieved = [3]
    for _ in range(11):
        ids, _ = exact_rotary_search(vectors, s, retrieved, 1)
        assert ids[0] not in retrieved
        retrieved.append(int(ids[0]))
    assert sorted(retrieved) == list(range(12))
    ep = Episode(0, "q", ["a", "b", "c"], [0], 3, retrieved=[1])
    assert ep.available().tolist() == [True, False, True]
    with pytest.raises(ValueError):
        ep.step(1)


# --- settings --------------------------------------------------------------------------------------


def test_cpu_preset_overrides_only_defaults_and_bad_input_is_refused(tmp_path):
    s = TrainSettings(preset="cpu", scale=7.0, bf16=False).resolve_preset()
    assert s.freeze_action and s.train_state_layers == 2 and s.piece_tokens == 32 and s.scale == 7.0
    assert s.bf16 is False  # an explicit value wins over the preset
    r = TrainSettings().resolve_preset()
    assert (r.lr, r.batch_size, r.scale, r.warmup_updates, r.freeze_action) == (5e-5, 64, 10.0, 1000, False)
    with pytest.raises(InputError, match="unknown preset"):
        TrainSettings(preset="gpu").resolve_preset()
    with pytest.raises(InputError, match="unknown task"):
        trainer_mod.train(TrainSettings(task="babilong:qa9", out=str(tmp_path / "r")))
    with pytest.raises(InputError, match="ruler training length '32K'"):
        trainer_mod.train(TrainSettings(task="ruler:vt", length="32K", out=str(tmp_path / "r")))
    with pytest.raises(InputError, match="--no-freeze-action"):
        trainer_mod.train(TrainSettings(preset="cpu", train_action_layers=1, out=str(tmp_path / "r")))
    (tmp_path / "exists").mkdir()
    with pytest.raises(OutputExistsError):
        trainer_mod.train(TrainSettings(out=str(tmp_path / "exists")))
    (tmp_path / "exists" / "precious.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not a qrag run folder"):
        trainer_mod.train(TrainSettings(out=str(tmp_path / "exists"), overwrite=True))
    assert (tmp_path / "exists" / "precious.txt").is_file()


# --- training on a tiny, trivially learnable task ---------------------------------------------------

WORDS = ["apple", "river", "stone", "cloud", "table", "green", "music", "paper", "window", "garden", "yellow", "horse"]


def synthetic(n: int, seed: int, n_chunks: int = 8) -> list[dict]:
    """Episodes whose single supporting chunk is the one that says 'treasure'."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chunks = [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(n_chunks)]
        j = rng.randrange(n_chunks)
        chunks[j] = "treasure treasure " + chunks[j]
        out.append({"question": "where is the treasure?", "context": chunks, "support": [j]})
    return out


def tiny_settings(tmp_path, tiny_model, **kw) -> TrainSettings:
    base = {"task": "babilong:qa1", "out": str(tmp_path / "run"), "model": str(tiny_model), "steps": 40, "seed": 0,
                "batch_size": 16, "n_envs": 4, "max_steps": 2, "lr": 2e-3, "warmup_updates": 4, "warmup_transitions": 32,
                "scale": 4.0, "val_every": 10, "threads": 1, "alpha": 0.05}
    base.update(kw)
    return TrainSettings(**base)


DATA = None


def data():
    global DATA
    if DATA is None:
        DATA = (synthetic(200, 0), synthetic(40, 1))
    return DATA


def rows(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_raises_validation_coverage_and_writes_policy_folders(tmp_path, tiny_model):
    s = tiny_settings(tmp_path, tiny_model, steps=20)
    summary = trainer_mod.train(s, samples=data())
    run = tmp_path / "run"
    metrics = rows(run)
    untrained = metrics[0]["val_coverage"]
    assert metrics[0]["update"] == 0 and summary["updates"] == 20
    assert summary["best_val_coverage"] > untrained + 0.2, (untrained, [m.get("val_coverage") for m in metrics])
    for name in ("last", "best"):
        folder = run / "checkpoints" / name
        m = json.loads((folder / "manifest.json").read_text())
        assert m["format"] == "qrag-policy" and m["format_version"] == 1
        pooling = json.loads((folder / "state" / "qrag_pooling.json").read_text())
        assert pooling == {"kind": "mean", "normalize": False, "scale": 4.0, "positions": "int"}
        assert (folder / "action" / "tokenizer.json").is_file()
    # the saved state folder is a model the inference code loads, with the trained pooling
    from qrag_cli.embed.models import resolve_model

    assert resolve_model(run / "checkpoints" / "best" / "state").pooling.positions == "int"
    with pytest.raises(OutputExistsError):
        trainer_mod.train(s, samples=data())


def interrupted_then_resumed(tmp_path, tiny_model, steps: int, stop_at: int, **kw) -> None:
    """A run killed after update `stop_at` and resumed gives the rows of an uninterrupted run."""
    kw = {"steps": steps, "val_every": 4, **kw}
    trainer_mod.train(tiny_settings(tmp_path / "a", tiny_model, **kw), samples=data())
    cut = tiny_settings(tmp_path / "b", tiny_model, **kw)

    def interrupt(row):
        if row["update"] == stop_at:  # after the checkpoint of update 4: the updates since are lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer_mod.train(cut, interrupt, samples=data())
    trainer_mod.train(replace(cut, resume=True), samples=data())
    a, b = rows(tmp_path / "a" / "run"), rows(tmp_path / "b" / "run")
    assert [r["update"] for r in b] == list(range(steps + 1))
    for ra, rb in zip(a, b):
        for key in ("loss", "q_mean", "return_mean", "val_coverage"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), (ra["update"], key)


def test_resume_continues_like_an_uninterrupted_run(tmp_path, tiny_model):
    interrupted_then_resumed(tmp_path, tiny_model, 12, 6, freeze_action=True, train_state_layers=1)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, tiny_model, monkeypatch):
    real = trainer_mod._loss

    def poisoned(trainer, batch):
        loss, q = real(trainer, batch)
        return (loss * float("nan"), q) if trainer.counters.updates >= 5 else (loss, q)

    monkeypatch.setattr(trainer_mod, "_loss", poisoned)
    s = tiny_settings(tmp_path, tiny_model, steps=10, val_every=4)
    with pytest.raises(TrainingError, match="nan.*update 6.*last good checkpoint"):
        trainer_mod.train(s, samples=data())
    m = json.loads((tmp_path / "run" / "checkpoints" / "last" / "manifest.json").read_text())
    assert m["updates"] == 4


def test_training_q_equals_what_the_inference_loop_scores(tiny_model):
    """The state layout and pooling of training are the inference encoder's: same embeddings."""
    from qrag_cli.rl.qnet import PolicyEncoder, QNet

    net = QNet(tiny_model, scale=4.0, positions="int", piece_tokens=5).eval()
    states = [["where is the treasure?"], ["where is the treasure?", "apple river stone cloud table green", "b"]]
    with torch.no_grad():
        ours = net.embed_states(states).numpy()
        chunks = net.embed_chunks(["apple river", "a much longer chunk of words here", "x"]).numpy()
    enc = PolicyEncoder(net, "state")
    np.testing.assert_allclose(enc.encode_states(states, 5), ours, rtol=1e-5, atol=1e-6)
    act = PolicyEncoder(net, "action")
    np.testing.assert_allclose(act.encode_texts(["apple river", "a much longer chunk of words here", "x"])[0],
                               chunks, rtol=1e-5, atol=1e-6)


def test_other_options_run_float_positions_alpha_on_lr_dropout(tmp_path, tiny_model):
    s = tiny_settings(tmp_path, tiny_model, steps=3, val_every=3, positions="float", alpha_schedule="lr",
                      rollout_dropout=True, bf16=True)
    summary = trainer_mod.train(s, samples=data())
    assert summary["updates"] == 3
    pooling = json.loads((tmp_path / "run" / "checkpoints" / "last" / "action" / "qrag_pooling.json").read_text())
    assert pooling["positions"] == "float"


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_model):
    s = tiny_settings(tmp_path, tiny_model, steps=2, val_every=2)
    trainer_mod.train(s, samples=data())
    last = tmp_path / "run" / "checkpoints" / "last"
    (last / "trainer.safetensors").write_bytes(b"garbage")
    with pytest.raises(IncompatibleError, match="trainer.safetensors has 7 bytes"):
        trainer_mod.train(replace(s, resume=True, steps=4), samples=data())
    (last / "manifest.json").write_text("{")
    with pytest.raises(IncompatibleError, match="manifest"):
        trainer_mod.train(replace(s, resume=True, steps=4), samples=data())
    with pytest.raises(InputError, match="differ"):
        trainer_mod.train(replace(s, resume=True, lr=1.0), samples=data())


def test_shared_frozen_lower_layers_give_the_full_forward(tiny_model):
    from qrag_cli.rl.qnet import QNet, StateBatch

    net = QNet(tiny_model, scale=4.0, positions="int", piece_tokens=8, train_state_layers=1).eval()
    assert net.frozen_layers == 1
    a = [["where is the treasure?"], ["where is it?", "apple river stone cloud table green"]]
    b = [["a question that is rather longer than the others", "x", "y z"]]
    with torch.no_grad():
        full = net.embed_states(a + b)
        split = net.embed_state_batch(StateBatch.cat([net.state_batch(a), net.state_batch(b)]))
    np.testing.assert_allclose(split.numpy(), full.numpy(), rtol=1e-5, atol=1e-5)
    assert len(net.state.encoder.layer) == 2 and not isinstance(net.state.embeddings, torch.nn.Identity)


def test_cached_lower_action_layers_give_the_full_forward_and_train_only_the_top(tiny_model):
    from qrag_cli.rl.qnet import QNet

    net = QNet(tiny_model, scale=4.0, positions="int", piece_tokens=8, train_action_layers=1).eval()
    assert net.action_frozen_layers == 1 and net.frozen_layers == 0
    texts = ["apple river", "a much longer chunk of words here and there", "x", "stone cloud table"]
    with torch.no_grad():
        full = net.embed_chunks(texts)
        low = net.chunk_lower(texts)
        np.testing.assert_allclose(net.embed_lower(low, batch=3).numpy(), full.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(net.embed_lower(low.take([3, 1])).numpy(), full[[3, 1]].numpy(),
                                   rtol=1e-5, atol=1e-6)
    trained = {n for n, p in net.action.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("encoder.layer.1.") for n in trained)
    assert len(net.action.encoder.layer) == 2  # the partial forward put every layer back
    net.train()
    net.embed_lower(low.take([0, 2])).sum().backward()  # gradients reach the top layer only
    assert all((p.grad is not None) == p.requires_grad for p in net.action.parameters())


def test_resuming_a_checkpoint_without_the_six_step_figure_reads_it_from_the_metrics(tmp_path, tiny_model):
    """Checkpoints written before `best` was ranked by coverage within the episode lack that counter."""
    s = tiny_settings(tmp_path, tiny_model, steps=8, val_every=4)
    done = trainer_mod.train(s, samples=data())
    last = tmp_path / "run" / "checkpoints" / "last"
    st = load_state(last, IncompatibleError)
    del st["counters"]["best_coverage_max_steps"]  # as an older qrag wrote it: pickled, no checksums
    torch.save(st, last / "trainer.pt")
    (last / "trainer.json").unlink()
    (last / "trainer.safetensors").unlink()
    manifest = json.loads((last / "manifest.json").read_text())
    del manifest["files"]
    (last / "manifest.json").write_text(json.dumps(manifest))
    best = json.loads((tmp_path / "run" / "checkpoints" / "best" / "manifest.json").read_text())["updates"]
    want = next(r for r in rows(tmp_path / "run") if r["update"] == best)["val_coverage_max_steps"]
    again = trainer_mod.train(replace(s, resume=True), samples=data())
    assert again["best_val_coverage_max_steps"] == want == done["best_val_coverage_max_steps"]


def test_training_with_the_top_action_layer_trained_resumes_like_an_uninterrupted_run(tmp_path, tiny_model):
    interrupted_then_resumed(tmp_path, tiny_model, 8, 5, freeze_action=False, train_action_layers=1)
    pooling = json.loads((tmp_path / "a" / "run" / "checkpoints" / "last" / "action" / "qrag_pooling.json").read_text())
    assert pooling == {"kind": "mean", "normalize": False, "scale": 4.0, "positions": "int"}  # the trained pooling


def test_frozen_action_encoder_gives_the_base_index_vectors(tmp_path, tiny_model):
    """With the action encoder frozen, chunk vectors are the base model's: a base-built index serves the policy."""
    from qrag_cli.embed.encoder import load_encoder
    from qrag_cli.embed.models import resolve_model
    from qrag_cli.rl.qnet import QNet

    texts = ["apple river", "a much longer chunk of words here", "x"]
    base = load_encoder(resolve_model(tiny_model), threads=1)
    net = QNet(tiny_model, scale=4.0, positions="int", piece_tokens=8, freeze_action=True).eval()
    with torch.no_grad():
        ours = net.embed_chunks(texts).numpy()
    np.testing.assert_allclose(ours, base.encode_texts(texts)[0], rtol=1e-5, atol=1e-6)
    net.save_policy_side(tmp_path, "action")
    assert json.loads((tmp_path / "qrag_pooling.json").read_text()) == {
        "kind": "mean", "normalize": True, "scale": 1.0, "positions": "int"}
    assert resolve_model(tmp_path).checksum == resolve_model(tiny_model).checksum  # same weights


@pytest.mark.parametrize("task, facts", [("ruler:niah_multivalue", 4), ("ruler:vt", 4)])
def test_ruler_training_samples(task, facts):
    """RULER tasks train on 4K-token contexts of the training novels, every needle a supporting chunk."""
    from tests.conftest import shared_dir

    if not (shared_dir() / "data" / "gutenberg").is_dir():
        pytest.skip("shared Gutenberg novels absent")
    s = trainer_mod.check(TrainSettings(task=task, n_train=3, n_val=2, out="unused"))
    assert s.length == "4K"
    train, val = trainer_mod.make_samples(s)
    assert len(train) == 3 and len(val) == 2
    for x in train + val:
        assert 100 <= len(x["context"]) <= 400 and len(x["support"]) >= facts - 1
        assert all(0 <= j < len(x["context"]) for j in x["support"])


def test_best_checkpoint_is_chosen_by_coverage_within_the_episode_then_minimum_steps():
    from qrag_cli.rl.trainer import Counters, is_best

    c = Counters()
    row = lambda at_min, at_max: {"val_coverage": at_min, "val_coverage_max_steps": at_max}  # noqa: E731
    assert is_best(row(0.0, 0.0), c)  # the first validation always is
    c.best_coverage, c.best_coverage_max_steps = 0.66, 0.94
    assert not is_best(row(0.70, 0.90), c)  # better in the minimum steps, worse within the episode
    assert is_best(row(0.54, 0.96), c)  # the figure `qrag bench` reports decides first
    assert is_best(row(0.66, 0.94), c)  # a tie: the later validation wins
    assert not is_best(row(0.64, 0.94), c)


def test_init_starts_from_another_runs_checkpoint_and_refuses_what_it_cannot_use(tmp_path, tiny_model):
    first = tiny_settings(tmp_path / "a", tiny_model, steps=4, val_every=4, freeze_action=True, train_state_layers=1)
    trainer_mod.train(first, samples=data())
    last = tmp_path / "a" / "run" / "checkpoints" / "last"
    then = tiny_settings(tmp_path / "b", tiny_model, steps=1, val_every=1, freeze_action=True, init=str(last))
    trainer_mod.train(then, samples=data())
    a, b = rows(tmp_path / "a" / "run"), rows(tmp_path / "b" / "run")
    assert a[0]["val_q_first"] != pytest.approx(a[4]["val_q_first"])  # training moved the first Q
    # the second run's untrained validation is the first run's last: it starts from those weights
    assert b[0]["val_q_first"] == pytest.approx(a[4]["val_q_first"], rel=1e-5)
    assert b[0]["val_coverage"] == a[4]["val_coverage"]
    assert json.loads((tmp_path / "b" / "run" / "settings.json").read_text())["init"] == str(last)
    shutil.rmtree(last)  # a resume continues from its own checkpoint: the --init folder is not needed again
    assert trainer_mod.train(replace(then, resume=True, steps=2), samples=data())["updates"] == 2

    with pytest.raises(InputError, match="not a checkpoint folder"):
        trainer_mod.train(replace(then, init=str(tmp_path), overwrite=True), samples=data())
    trained = tiny_settings(tmp_path / "c", tiny_model, steps=2, val_every=2)  # the action encoder trained too
    trainer_mod.train(trained, samples=data())
    with pytest.raises(InputError, match="action encoder was trained"):
        trainer_mod.train(replace(then, init=str(tmp_path / "c" / "run" / "checkpoints" / "last"), overwrite=True),
                          samples=data())
    assert len(rows(tmp_path / "b" / "run")) == 3  # the refused --overwrite run replaced nothing


def test_frozen_action_vectors_embed_each_distinct_text_once(tiny_model, monkeypatch):
    from qrag_cli.rl.qnet import QNet
    from qrag_cli.rl.tasks import check

    s = check(TrainSettings(task="babilong:qa1", preset="cpu", out="unused"))
    net = QNet(tiny_model, scale=4.0, positions="int", piece_tokens=8, freeze_action=True).eval()
    samples = [{"question": "q?", "context": ["a b", "story line", "c d", "a b"], "support": [1]},
               {"question": "q?", "context": ["story line", "e f", "a b"], "support": [0]}]
    tr = trainer_mod.Trainer(s, net, samples, [])
    calls, embed = [], net.embed_chunks
    monkeypatch.setattr(net, "embed_chunks", lambda texts, *a, **k: calls.append(list(texts)) or embed(texts, *a, **k))
    first, second = tr.frozen_vectors(samples[0]["context"]), tr.frozen_vectors(samples[1]["context"])
    assert calls == [["a b", "story line", "c d"], ["e f"]]  # the second context embeds only its new text
    with torch.no_grad():
        for got, sample in ((first, samples[0]), (second, samples[1])):
            np.testing.assert_allclose(got.numpy(), embed(sample["context"]).numpy(), rtol=1e-5, atol=1e-5)

"""benchmarks/peers.py: each same-math pairing agrees with its PyPI peer; a missing peer is a skip with the reason."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peers  # noqa: E402

SAME_MATH = [p for p in peers.PEERS if p.same_math]


def _args(length: int = 64, batch: int = 2, heads: int = 4) -> argparse.Namespace:
    return argparse.Namespace(agreement_length=length, batch=batch, heads=heads, head_dim=16)


@pytest.mark.parametrize("peer", SAME_MATH, ids=[p.label for p in SAME_MATH])
def test_same_math_pairings_agree_with_their_peer(peer):
    reason = peer.available()
    if reason:
        pytest.skip(reason)
    # nystrom: the peer scales its first pseudo-inverse iterate over the whole batch, ours per (batch, head)
    # matrix (peers.py says so); with one matrix the two are the same formula.
    args = _args(batch=1, heads=1) if peer.variant == "nystrom" else _args()
    diff = peers.agreement(peer, args)
    assert diff < 1e-4, f"{peer.label} differs from {peer.package} by {diff:.3g}"


def test_different_definitions_report_no_agreement_and_still_run():
    lsh = next(p for p in peers.PEERS if p.variant == "lsh")
    if lsh.available():
        pytest.skip(lsh.available())
    assert peers.agreement(lsh, _args()) is None
    args = argparse.Namespace(agreement_length=64, batch=1, heads=2, head_dim=16, lengths=[128], memory_length=128,
                              backward_length=128, repeats=1)
    row = peers.measure(lsh, args)
    assert row["status"] == "ok" and row["fwd128"][0] > 0 and row["fwdbwd128"][1] > 0 and row["memory"][0] > 0


def test_a_missing_peer_is_a_row_that_says_how_to_install_it():
    ghost = peers.Peer(variant="alibi", package="no-such-peer", module="no_such_peer_module", call="x",
                       build=lambda *a: None)
    assert "pip install -e .[peers]" in ghost.available()
    assert peers.measure(ghost, _args())["status"].startswith("no-such-peer not installed")


def test_bad_flags_name_the_value(capsys):
    with pytest.raises(SystemExit) as exit_info:
        peers.main(["--variants", "alibii"])
    assert exit_info.value.code == 2
    assert "no peer for ['alibii']" in capsys.readouterr().err

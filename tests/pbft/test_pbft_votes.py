"""VoteSet: duplicates are no-ops, double votes are evidence and do not count."""

from mbds_py.pbft.messages import Prepare
from mbds_py.pbft.votes import DoubleVote, VoteOutcome, VoteSet

A, B = b"\xaa" * 32, b"\xbb" * 32


def test_adding_a_duplicate_vote_is_a_no_op():
    votes = VoteSet()
    assert votes.add(Prepare(1, 5, A, 2, b"s1")) is VoteOutcome.ADDED
    assert votes.add(Prepare(1, 5, A, 2, b"s1")) is VoteOutcome.DUPLICATE
    assert votes.add(Prepare(1, 5, A, 2, b"other-encoding")) is VoteOutcome.DUPLICATE
    assert votes.count(1, 5, A) == 1 and votes.signers(1, 5, A) == {2}
    assert votes.evidence == []


def test_double_vote_is_recorded_as_evidence_and_not_counted():
    votes = VoteSet()
    first, second = Prepare(1, 5, A, 3, b"x"), Prepare(1, 5, B, 3, b"y")
    votes.add(first)
    assert votes.add(second) is VoteOutcome.CONFLICT
    assert votes.count(1, 5, A) == 1 and votes.count(1, 5, B) == 0
    assert votes.evidence == [DoubleVote(first, second)] and votes.evidence[0].replica == 3
    # the same signer may vote again in another view or for another sequence number
    assert votes.add(Prepare(2, 5, B, 3, b"z")) is VoteOutcome.ADDED
    assert votes.add(Prepare(1, 6, B, 3, b"w")) is VoteOutcome.ADDED


def test_votes_are_listed_by_signer_and_pruned_by_view_and_seq():
    votes = VoteSet()
    for signer in (3, 1, 2):
        votes.add(Prepare(1, 5, A, signer, b""))
    votes.add(Prepare(2, 9, A, 1, b""))
    assert [v.sender for v in votes.votes(1, 5, A)] == [1, 2, 3]
    votes.prune(up_to_seq=5)
    assert votes.count(1, 5, A) == 0 and votes.count(2, 9, A) == 1
    votes.prune(below_view=3)
    assert len(votes) == 0

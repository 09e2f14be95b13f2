"""Seeds that once failed, pinned with their full scenario (robust to generator changes)."""

from mbds_py.pbft.sim import FaultEvent, Scenario, run


def test_checkpoints_lost_in_a_crash_are_signed_again_so_the_window_moves():
    """Replicas that crashed after executing seq 2 and 4 took their CHECKPOINTs with them:
    the stable checkpoint never formed, the primary hit the high water mark and views
    rotated forever.  Fixed: re-sign checkpoints on restore and state transfer, and
    retransmit not-yet-stable checkpoints in answer to STATUS."""
    scenario = Scenario(
        seed=7, n=4, slips=28, max_slips=4, max_inflight=3, checkpoint_interval=2, window=4,
        submit_until=1.0188273688324339, loss=0.1590808076159321, long_delay=0.02,
        faults=(
            FaultEvent(0.2070331320434852, "crash", 3),
            FaultEvent(0.6667220254692553, "partition", groups=(frozenset({3}), frozenset({0, 1, 2}))),
            FaultEvent(0.9189137096015723, "restart", 3),
            FaultEvent(1.055221077006659, "crash", 0),
            FaultEvent(1.6518757793052647, "heal"),
            FaultEvent(1.9781479403719477, "restart", 0),
            FaultEvent(2.746743947761728, "crash", 3),
            FaultEvent(3.691984778605852, "restart", 3),
            FaultEvent(4.135845435519534, "heal"),
            FaultEvent(5.246940228291397, "partition", groups=(frozenset({1, 2}), frozenset({0, 3}))),
            FaultEvent(5.970535042724439, "partition", groups=(frozenset({1}), frozenset({0, 2, 3}))),
            FaultEvent(6.163076235190779, "heal"),
        ),
        faults_until=6.163076235190779,
    )
    run(scenario).check()


def test_censorship_timer_does_not_fire_again_right_after_a_new_view():
    """With an equivocating replica and repeated partitions the oldest slip aged past
    the censorship timeout, which then fired immediately after every NEW-VIEW (2,000+
    views).  Fixed: the censorship deadline is never earlier than view start + timeout."""
    scenario = Scenario(
        seed=140, n=4, slips=12, max_slips=6, max_inflight=3, checkpoint_interval=2, window=4,
        submit_until=2.875360298330996, submit_to_all=True, loss=0.1834375470947696,
        faults=(
            FaultEvent(1.0550507171756203, "partition", groups=(frozenset({0, 1}), frozenset({2, 3}))),
            FaultEvent(1.2816511549028085, "partition", groups=(frozenset({2, 3}), frozenset({0, 1}))),
            FaultEvent(2.505024418914414, "partition", groups=(frozenset({1, 3}), frozenset({0, 2}))),
            FaultEvent(3.656982879859264, "partition", groups=(frozenset({2}), frozenset({0, 1, 3}))),
            FaultEvent(5.060881332416786, "partition", groups=(frozenset({1}), frozenset({0, 2, 3}))),
            FaultEvent(5.647881002174077, "crash", 3),
            FaultEvent(6.013357029790399, "restart", 3),
            FaultEvent(6.013357029790399, "heal"),
        ),
        byzantine=((2, "equivocate"),),
        faults_until=6.013357029790399,
    )
    run(scenario).check()


def test_new_view_timer_runs_once_a_quorum_has_moved_on():
    """Replica 3's VIEW-CHANGE for view 1 was lost; it timed out into view 2 while 1
    and 2 waited in view 1 with two VIEW-CHANGEs each and no timer: deadlock.  Fixed:
    the NEW-VIEW timer starts when a quorum asks for this view *or a later one*."""
    scenario = Scenario(
        seed=438, n=4, slips=24, max_slips=3, max_inflight=2, checkpoint_interval=4, window=12,
        submit_until=1.3071975380294578, loss=0.12306991918979902, long_delay=0.03,
        faults=(
            FaultEvent(0.5447277086951141, "crash", 0),
            FaultEvent(1.2751310997600176, "partition", groups=(frozenset({2}), frozenset({0, 1, 3}))),
            FaultEvent(4.063566044788502, "heal"),
        ),
        faults_until=4.063566044788502, status_interval=1.0,
    )
    run(scenario).check()


def test_block_is_only_committed_on_top_of_the_executed_chain():
    """Seq 2's block was committed while seq 1 never was; the next view made seq 1
    null, so block 2 (certified!) could never be applied, and a certified header
    off the applied chain could have reached the chain contract.  Later, replicas
    that had executed a re-issued null skipped it and laggards starved.  Fixed:
    COMMIT only once every lower seq is executed and the block extends the head;
    replicas vote on re-issued entries they already executed."""
    scenario = Scenario(
        seed=760, n=4, slips=16, max_slips=2, max_inflight=2, checkpoint_interval=2, window=6,
        submit_until=2.534633835894661, loss=0.2975776404641497,
        faults_until=3.1371649603333203, request_timeout=2.0, status_interval=2.0,
    )
    result = run(scenario)
    result.check()
    assert not any(f.kind == "diverged" for faults in result.faults.values() for f in faults)


def test_a_restarted_replica_still_commits_the_nulls_it_executed():
    """View 1 re-issued seq 1-2 as null requests; replicas 0 and 1 executed both, 2 and 3
    only seq 1, and then 0 and 1 crashed and restarted.  Every later NEW-VIEW re-issued
    the nulls, but a replica re-sends COMMIT for an entry at or below its last executed
    seq only if it executed that very entry, and that record was rebuilt on restart
    from the applied blocks alone: 0 and 1 no longer knew what they had executed at
    seq 2 and withheld their COMMITs, so 2 and 3 never executed it, never signed
    checkpoint 2 nor committed seq 3 (which 0 and 1 needed): 160 views, nothing
    applied.  Fixed: what a seq left in the state is derived from the applied chain
    (the block applied there, else null), which survives restarts and state transfer."""
    scenario = Scenario(
        seed=512654, n=4, slips=12, max_slips=3, max_inflight=3, checkpoint_interval=2, window=8,
        submit_until=2.56165036424908, loss=0.2626897137502623,
        faults=(
            FaultEvent(0.9879026016698924, "crash", 2),
            FaultEvent(1.4761024557732365, "crash", 0),
            FaultEvent(2.1967893982978857, "partition", groups=(frozenset({1, 2}), frozenset({0, 3}))),
            FaultEvent(2.302449908137897, "restart", 0),
            FaultEvent(2.3080255228341695, "restart", 2),
            FaultEvent(2.9137946679506967, "crash", 1),
            FaultEvent(3.8304510881029614, "partition", groups=(frozenset({0}), frozenset({1, 2, 3}))),
            FaultEvent(4.284184087364032, "restart", 1),
            FaultEvent(4.843114194022405, "crash", 1),
            FaultEvent(4.989597983744798, "restart", 1),
            FaultEvent(5.802001296977935, "heal"),
        ),
        byzantine=((3, "equivocate"),),
        faults_until=5.802001296977935, request_timeout=0.5, view_change_timeout=0.5,
    )
    result = run(scenario)
    result.check()
    assert max(result.views.values()) < 20

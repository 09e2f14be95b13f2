"""Cost of keyword padding (issue 13 item 13): one 3-keyword record (build + review + confirm) and a no-match
search, for each KEYWORD_SLOTS value given: ``python scripts/privacy_cost.py 3 4 8``.  A timing script, not a test."""

from __future__ import annotations

import statistics
import sys
import time

from mbds_py.bench.crypto_bench import DOMAIN, KEYWORD_POOL, _Ingest
from mbds_py.crypto import build_envelope, confirm_record, match_all, review_envelope

def med(fn, reps=7, per=1):
    out = []
    for _ in range(reps):
        t = time.process_time(); fn(); out.append((time.process_time() - t) * 1000 / per)
    return statistics.median(out)

ing = _Ingest()
for N in [int(a) for a in sys.argv[1:]]:
    def env():
        ing.i += 1
        return build_envelope(ing.hmis[ing.i % 8], ing.keywords(ing.i), ing.patient.public_keys, ing.doctor.signer,
                              timestamp=1_700_000_000 + ing.i, record_type="diagnosis", text="v", domain=DOMAIN,
                              keyword_slots=N)
    rev = lambda e: review_envelope(e, ing.patient, domain=DOMAIN, expected_doctor=ing.doctor.address, keyword_slots=N)
    for _ in range(len(KEYWORD_POOL)):
        confirm_record(rev(env()), ing.patient, storage_address="x")
    n = 20
    b = med(lambda: [env() for _ in range(n)], per=n)
    envs = [env() for _ in range(n)]
    r = med(lambda: [rev(e) for e in envs], per=n)
    f = med(lambda: [confirm_record(rev(env()), ing.patient, storage_address="x") for _ in range(n)], per=n)
    recs = {i: envs[i % n].header.keyword_ciphertexts for i in range(200)}
    td = [ing.patient.trapdoor("icd10|Z99.9")]
    s = med(lambda: match_all(td, recs, workers=1), reps=3)
    print(f"N={N}: build {b:.2f} ms, review {r:.2f} ms, record total {f:.2f} ms (CPU), "
          f"no-match search 200 records {s:.0f} ms (1 worker) = {s/200:.2f} ms/record")

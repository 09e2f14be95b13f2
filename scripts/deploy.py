"""`ape run deploy`: enrol the population and deploy each chain's contracts (same as `mbds deploy`).

The chains must be up (`mbds up` or `mbds devnet up`).  The network is the embedded default spec in
the state folder named by MBDS_STATE_DIR (else the per-user default); the keystores' passphrase comes
from MBDS_PASSPHRASE, else a prompt.  Re-running deploys nothing new.  (Ape keeps its own options,
such as --network, to itself: use `mbds deploy --spec FILE` for another spec.)
"""

from mbds_py.cli import main as mbds_main


def main():
    code = mbds_main(["deploy"])
    if code:
        raise SystemExit(code)

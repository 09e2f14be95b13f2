"""`ape run deploy`: deploy each chain's contracts per the network spec (same as `mbds deploy`).

The devnet must be up (`mbds devnet up`); the KMC passphrase comes from
MBDS_KMC_PASSPHRASE (or a prompt).  Re-running deploys nothing new.
"""

import sys

from mbds_py.cli import main as mbds_main


def main():
    code = mbds_main(["deploy", *sys.argv[sys.argv.index("deploy") + 1:]] if "deploy" in sys.argv else ["deploy"])
    if code:
        raise SystemExit(code)

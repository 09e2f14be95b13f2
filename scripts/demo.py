"""`ape run demo`: the scripted MBDS demo on embedded defaults (same as `mbds demo`)."""

from mbds_py.cli import main as mbds_main


def main():
    code = mbds_main(["demo"])
    if code:
        raise SystemExit(code)

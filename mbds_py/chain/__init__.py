"""Thin adapters between the pure MBDS core and EVM chains (web3.py)."""

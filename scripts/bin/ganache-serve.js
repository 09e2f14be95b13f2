#!/usr/bin/env node
// Ganache 7 on any port, port 0 included (its CLI refuses port 0): the process binds the
// port itself and prints "Listening on HOST:PORT" once it serves, so nothing probes a port.
// Usage: ganache-serve.js HOST PORT CHAIN_ID BLOCK_TIME MNEMONIC
"use strict";
const ganache = require("ganache");

const [host, port, chainId, blockTime, mnemonic] = process.argv.slice(2);
const options = {
  chain: { chainId: Number(chainId), networkId: Number(chainId), hardfork: "shanghai" },
  wallet: { mnemonic, totalAccounts: 10, defaultBalance: 1000000 },
  miner: Number(blockTime) > 0 ? { blockTime: Number(blockTime) } : {},
  logging: { quiet: true },
};
const server = ganache.server(options);
server.listen(Number(port), host, (err) => {
  if (err) {
    console.error(`ganache: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  }
  console.log(`Listening on ${host}:${server.address().port}`);
});
const stop = () => server.close().then(() => process.exit(0), () => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

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
serializeSends(server.provider);
server.listen(Number(port), host, (err) => {
  if (err) {
    console.error(`ganache: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  }
  console.log(`Listening on ${host}:${server.address().port}`);
});
// Ganache 7's eager instamine races when a transaction arrives while another one is being mined: under
// load its miner can stop for good, leaving executable transactions in the pool (evm_mine and
// miner_stop/miner_start do not revive it; ganache issues #2489, #4487, #4522). Transactions are
// therefore handed to the miner one at a time: the next waits until the previous one is mined (or
// SEND_SLOT_MS passed: a future-nonce transaction is held until its gap fills and must not block the rest).
function serializeSends(provider) {
  const SENDS = new Set(["eth_sendRawTransaction", "eth_sendTransaction"]);
  const SEND_SLOT_MS = 5000;
  const raw = provider._requestRaw.bind(provider);
  let tail = Promise.resolve();
  provider._requestRaw = async (request) => {
    if (!SENDS.has(request.method)) return raw(request);
    const previous = tail;
    let release;
    tail = new Promise((resolve) => { release = resolve; });
    await previous;
    let out;
    try {
      out = await raw(request);
    } catch (err) {
      release();
      throw err;
    }
    const settled = Promise.resolve(out.value).then(() => undefined, () => undefined);
    Promise.race([settled, new Promise((resolve) => setTimeout(resolve, SEND_SLOT_MS).unref())]).then(release);
    return out;
  };
}

const stop = () => server.close().then(() => process.exit(0), () => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

import { benchDispatcher, writeResults } from './dispatcher.js'
import { benchSignatures } from './signatures.js'
import { benchAccounts } from './accounts.js'
import { benchSync } from './sync.js'

// `npm run bench [dispatcher|signatures|accounts]`: results in bench/results/*.json and a short table.
// The simulators have their own scripts: `npm run sim:kademlia`, `npm run sim:hashtags`.
// the daemons log as a box does by default (tests keep debug, to read the logs back)
process.env.CENTER_TEST_LOG_LEVEL ??= 'info'
const which = new Set(process.argv.slice(2))
const all = which.size === 0

if (all || which.has('signatures')) writeResults('signatures', (await benchSignatures()).map((r: any) => ({ name: r.name, value: r.value, unit: r.unit })))
if (all || which.has('dispatcher')) writeResults('dispatcher', await benchDispatcher())
if (all || which.has('accounts')) writeResults('accounts', await benchAccounts())
if (all || which.has('sync')) writeResults('sync', await benchSync())

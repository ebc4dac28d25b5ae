#!/usr/bin/env node
import { main } from '../cli/index.js'
import { setTestClockOffset } from '../wire/envelope.js'

// tests only: the same skewed box clock centerd is given (test/system/doctor.test.ts)
if (process.env.CENTER_TEST_CLOCK_OFFSET_SECONDS !== undefined) setTestClockOffset(Number(process.env.CENTER_TEST_CLOCK_OFFSET_SECONDS))

await main(process.argv)

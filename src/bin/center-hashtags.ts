#!/usr/bin/env node
import { main } from '../hashtags/cli.js'

process.exitCode = main(process.argv.slice(2))

// The API's env loaders as oracles (tests/env_loaders.rs): what npm dotenv,
// dotenv-flow (pinned in package.json) make of env files.
//
//   node env_loaders.js parse < texts.json   -> [{name: value, ...}, ...] per text (dotenv.parse)
//   node env_loaders.js config DIR FILE...   -> process.env after dotenv.config({ path: [FILE...] })
//   node env_loaders.js flow DIR NODE_ENV    -> process.env after dotenv-flow's config()
//
// `config` and `flow` print the whole process environment: the test runs them
// with a cleared environment plus the variables the process is meant to have.
'use strict'

const fs = require('fs')
const path = require('path')

const [mode, ...args] = process.argv.slice(2)
const out = (value) => process.stdout.write(JSON.stringify(value))

if (mode === 'parse') {
  const dotenv = require('dotenv')
  const texts = JSON.parse(fs.readFileSync(0, 'utf8'))
  // Each text as bytes (base64), so that invalid UTF-8 reaches dotenv as a file would.
  out(texts.map((b64) => dotenv.parse(Buffer.from(b64, 'base64').toString('utf8'))))
} else if (mode === 'config') {
  const [dir, ...files] = args
  require('dotenv').config({ path: files.map((f) => path.join(dir, f)), quiet: true })
  out(process.env)
} else if (mode === 'flow') {
  const [dir, nodeEnv] = args
  require('dotenv-flow').config({ path: dir, node_env: nodeEnv, silent: true })
  out(process.env)
} else {
  process.stderr.write(`unknown mode ${mode}\n`)
  process.exit(2)
}

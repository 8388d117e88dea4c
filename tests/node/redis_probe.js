#!/usr/bin/env node
// redis_probe.js — oracle: connect the way the MockMate API does with node-redis,
// PING, and print exactly ONE JSON line:
//   {"ok":true,"tls":true|false,"pong":"PONG"}
//   {"ok":false,"code":"...","message":"..."}
// and exit 0 either way (non-zero only for a bug in this script).
//
// Inputs (environment):
//   REDIS_URL          -> createClient({ url: REDIS_URL, socket: { reconnectStrategy: false, connectTimeout } })
//   PROBE_TIMEOUT_MS   connectTimeout (default 5000); process-level timer fires 3 s later.
//   REDIS_CA_CERT      ASSUMPTION: the API passes only `url` (no `socket.ca`), so by
//                      default this variable is IGNORED, as the API would ignore it.
//                      Set PROBE_HONOR_REDIS_CA_CERT=1 to model an API build that does
//                      createClient({ url, socket: { ca: fs.readFileSync(REDIS_CA_CERT) } }).
'use strict'

const fs = require('fs')

const timeoutMs = Number(process.env.PROBE_TIMEOUT_MS || 5000)
let done = false

const secrets = []
function addSecret(s) {
  if (typeof s === 'string' && s.length > 0 && !secrets.includes(s)) secrets.push(s)
}
if (process.env.REDIS_URL) {
  try {
    const u = new URL(process.env.REDIS_URL)
    addSecret(u.password)
    try { addSecret(decodeURIComponent(u.password)) } catch (_) { /* malformed escape */ }
    // redis://secret@host: node-redis sends the user part as a user name, but people
    // often mean it as a password, so scrub it too.
    addSecret(u.username)
    try { addSecret(decodeURIComponent(u.username)) } catch (_) { /* malformed escape */ }
  } catch (_) {
    const m = /^[^:]+:\/\/([^@/]*)@/.exec(process.env.REDIS_URL)
    if (m) for (const part of m[1].split(':')) addSecret(part)
  }
}
secrets.sort((a, b) => b.length - a.length)
// A secret is replaced only where it is not part of a longer word, so a short
// secret (say a user name "word") does not mangle "password" in a server message.
function scrub(s) {
  let out = String(s)
  for (const sec of secrets) {
    const esc = sec.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    out = out.replace(new RegExp('(?<![A-Za-z0-9])' + esc + '(?![A-Za-z0-9])', 'g'), '***')
  }
  return out
}

function emit(obj) {
  if (done) return
  done = true
  process.stdout.write(JSON.stringify(obj) + '\n')
  setImmediate(() => process.exit(0))
}

function fail(err) {
  let code = err && typeof err.code === 'string' && err.code ? err.code : null
  const message = err && err.message !== undefined ? err.message : String(err)
  if (!code) {
    // Redis error replies carry their code as the first word (WRONGPASS, NOAUTH, ...).
    const m = /^([A-Z][A-Z_]+) /.exec(message)
    code = m ? m[1] : err && err.name && err.name !== 'Error' ? err.name : 'NOCODE'
  }
  emit({ ok: false, code, message: scrub(message) })
}

// Started once the driver is loaded: loading it is not what is being timed.
let hardTimer = null

process.on('uncaughtException', fail)
process.on('unhandledRejection', fail)

async function main() {
  const { createClient } = require('redis')
  hardTimer = setTimeout(() => {
    emit({ ok: false, code: 'PROBE_TIMEOUT', message: `no answer within ${timeoutMs + 3000}ms` })
  }, timeoutMs + 3000)
  const socket = { reconnectStrategy: false, connectTimeout: timeoutMs }
  if (process.env.PROBE_HONOR_REDIS_CA_CERT === '1' && process.env.REDIS_CA_CERT) {
    socket.ca = fs.readFileSync(process.env.REDIS_CA_CERT)
  }
  let client
  try {
    client = createClient({ url: process.env.REDIS_URL, socket })
    // Without an 'error' listener node-redis would throw socket errors as uncaught.
    let firstError = null
    client.on('error', (e) => {
      if (!firstError) firstError = e
    })
    await client.connect()
    const pong = await client.ping()
    const tls = !!(client.options && client.options.socket && client.options.socket.tls)
    clearTimeout(hardTimer)
    emit({ ok: true, tls, pong })
  } catch (err) {
    clearTimeout(hardTimer)
    fail(err)
  } finally {
    if (client) {
      try { client.destroy() } catch (_) { /* not open */ }
    }
  }
}

main().catch(fail)

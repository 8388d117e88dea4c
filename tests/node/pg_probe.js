#!/usr/bin/env node
// pg_probe.js — oracle: connect the way the MockMate API does with node-postgres,
// run SELECT 1, report whether the session is encrypted. Prints exactly ONE JSON line:
//   {"ok":true,"ssl":true|false}
//   {"ok":false,"code":"...","message":"..."}
// and exits 0 either way (non-zero only for a bug in this script).
//
// Inputs (environment):
//   DATABASE_URL            -> new Pool({ connectionString: DATABASE_URL, ssl })
//   DB_HOST DB_PORT DB_USER DB_PASSWORD DB_NAME (when DATABASE_URL is unset)
//                           -> new Pool({ host, port, user, password, database, ssl })
//   POOL_SSL      optional JSON for the Pool's `ssl` option: 'true', 'false',
//                 '"true"', '{"rejectUnauthorized":false}', ... Unset = no `ssl` key at all.
//   POOL_SSL_CA   optional path to a PEM CA; adds { ca: <file contents> } to the ssl option
//                 (merged into POOL_SSL when that is an object).
//   PROBE_TIMEOUT_MS  connectionTimeoutMillis (default 5000); a process-level timer
//                 fires 3 s after that and reports code PROBE_TIMEOUT.
// PG* variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, ...) are
// deliberately NOT cleared: pg reads them itself, exactly as it would inside the API.
'use strict'

const fs = require('fs')

const timeoutMs = Number(process.env.PROBE_TIMEOUT_MS || 5000)
let done = false

// Every secret we know of, raw and decoded, so messages never carry one.
const secrets = []
function addSecret(s) {
  if (typeof s === 'string' && s.length > 0 && !secrets.includes(s)) secrets.push(s)
}
addSecret(process.env.DB_PASSWORD)
addSecret(process.env.PGPASSWORD)
if (process.env.DATABASE_URL) {
  try {
    const u = new URL(process.env.DATABASE_URL)
    addSecret(u.password)
    try { addSecret(decodeURIComponent(u.password)) } catch (_) { /* malformed escape */ }
    const qp = u.searchParams.get('password')
    addSecret(qp)
  } catch (_) {
    // Unparseable by WHATWG URL: scrub whatever sits between the first ':' after '//'
    // and the last '@' (best effort).
    const m = /^[^:]+:\/\/[^:/]*:(.*)@/.exec(process.env.DATABASE_URL)
    if (m) addSecret(m[1])
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
  // Exit on the next tick so the line is flushed; never wait for sockets to drain.
  setImmediate(() => process.exit(0))
}

function fail(err) {
  const code = err && typeof err.code === 'string' && err.code ? err.code : 'NOCODE'
  const message = err && err.message !== undefined ? err.message : String(err)
  emit({ ok: false, code, message: scrub(message) })
}

// Started once the driver is loaded: loading it is not what is being timed.
let hardTimer = null

// Unexpected async errors from the driver (socket errors after connect, etc.).
process.on('uncaughtException', fail)
process.on('unhandledRejection', fail)

function poolSslOption() {
  let ssl
  let has = false
  if (process.env.POOL_SSL !== undefined) {
    ssl = JSON.parse(process.env.POOL_SSL)
    has = true
  }
  if (process.env.POOL_SSL_CA) {
    const ca = fs.readFileSync(process.env.POOL_SSL_CA).toString()
    ssl = ssl && typeof ssl === 'object' ? Object.assign({}, ssl, { ca }) : { ca }
    has = true
  }
  return { has, ssl }
}

async function main() {
  const { Pool } = require('pg')
  hardTimer = setTimeout(() => {
    emit({ ok: false, code: 'PROBE_TIMEOUT', message: `no answer within ${timeoutMs + 3000}ms` })
  }, timeoutMs + 3000)
  const { has, ssl } = poolSslOption()
  let config
  if (process.env.DATABASE_URL) {
    config = { connectionString: process.env.DATABASE_URL }
  } else {
    config = {
      host: process.env.DB_HOST,
      port: process.env.DB_PORT ? Number(process.env.DB_PORT) : undefined,
      user: process.env.DB_USER,
      password: process.env.DB_PASSWORD,
      database: process.env.DB_NAME,
    }
  }
  if (has) config.ssl = ssl
  config.connectionTimeoutMillis = timeoutMs
  config.max = 1

  const pool = new Pool(config)
  pool.on('error', () => {}) // idle-client errors after we are done are irrelevant
  let client
  try {
    client = await pool.connect()
    await client.query('SELECT 1')
    let on = false
    try {
      const r = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
      on = r.rows.length > 0 && r.rows[0].ssl === true
    } catch (_) {
      // pg_stat_ssl unavailable (e.g. a proxy): fall back to the socket type
      on = !!(client.connection && client.connection.stream && client.connection.stream.encrypted)
    }
    clearTimeout(hardTimer)
    emit({ ok: true, ssl: on })
  } catch (err) {
    clearTimeout(hardTimer)
    fail(err)
  } finally {
    if (client) client.release(true)
    pool.end().catch(() => {})
  }
}

main().catch(fail)

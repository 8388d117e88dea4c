// The stand-in MockMate API for mockmate-diag's tests: Express 5, node-postgres,
// node-redis and jsonwebtoken, pinned in ../package.json, with both versions of
// POST /api/sessions/create from production-session-fix.md:
//
//   --route before   the original: a direct insert, 201 whatever happens (the
//                    insert's error is logged and swallowed; the session is
//                    cached in Redis all the same) — the incident;
//   --route fixed    the fix: a transaction, the user check (400
//                    INVALID_USER_REFERENCE), the credit check (403
//                    INSUFFICIENT_CREDITS), the insert, one credit taken (the
//                    credit check implies sessions cost one), COMMIT, then the
//                    Redis cache (non-fatal, as the runbook says).
//
// Switches that break it the ways production breaks:
//   --fail-create    the create route answers 500 (an unexpected error)
//   --hang           every route accepts the request and never answers
//   --create-then-hang  the fixed route creates (and caches) the session, then never answers
//   --no-id          a 201 whose body carries no session id (the row is stored)
//   --no-health      no GET /health (Express answers 404)
//   --idempotent     a user who has a session gets it back (201), none is created
//   --other-change N someone else changes the user's credits by N while the
//                    request runs (after the route's own transaction)
//   --leak VAR       the create route answers 500 quoting process.env[VAR], the
//                    value placed across the 200th character of "error: details"
//   --tls-cert F --tls-key F   HTTPS with that certificate (the harness's test CA)
//
// Every request is logged as `request METHOD PATH` before it is handled.
//
// Environment: PORT (0: any free port), DATABASE_URL, REDIS_URL (optional: no
// cache without it), JWT_SECRET. Prints `listening <port>` once it listens.

'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const express = require('express');
const jwt = require('jsonwebtoken');
const { Pool } = require('pg');
const { createClient } = require('redis');

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const route = option('--route') || 'fixed';
if (!['before', 'fixed'].includes(route)) {
  console.error(`--route must be before or fixed, not ${route}`);
  process.exit(2);
}

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
pool.on('error', (e) => console.error('pg pool error:', e.message));
let redis = null;
if (process.env.REDIS_URL) {
  redis = createClient({ url: process.env.REDIS_URL });
  redis.on('error', (e) => console.error('Redis error:', e.message));
}

const app = express();
app.use((req, _res, next) => {
  console.log('request', req.method, req.path);
  next();
});
app.use(express.json());

if (flag('--hang')) {
  // Accept, read, never answer: an event loop stuck elsewhere looks the same.
  app.use((_req, _res) => {});
}

if (!flag('--no-health')) {
  app.get('/health', (_req, res) => {
    res.set('X-API-Version', '1.4.2-standin');
    res.json({ status: 'ok', route });
  });
}

// The usual Express JWT middleware: the user id from `id`, `userId` or `sub`.
function auth(req, res, next) {
  const header = req.headers.authorization || '';
  const token = header.startsWith('Bearer ') ? header.slice(7) : '';
  try {
    const claims = jwt.verify(token, process.env.JWT_SECRET);
    req.user = { id: claims.id || claims.userId || claims.sub };
    next();
  } catch (e) {
    // Careless, as real APIs are: the token is echoed back. mockmate-diag must mask it.
    res.status(401).json({ error: `Invalid token ${token}: ${e.message}` });
  }
}

async function cache(session) {
  if (!redis) return;
  try {
    await redis.set(`session:${session.id}`, JSON.stringify(session), { EX: 3600 });
    console.log('✅ Session stored in Redis cache:', session.id);
  } catch (e) {
    console.error('Redis cache write failed (non-fatal):', e.message);
  }
}

const INSERT = `INSERT INTO sessions (id, user_id, job_title, difficulty, duration, session_type)
  VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`;

function values(req, id) {
  const { jobTitle, difficulty, duration, sessionType } = req.body || {};
  return [id, req.user.id, jobTitle, difficulty, duration, sessionType];
}

function created(res, session) {
  if (flag('--no-id')) {
    const { id: _id, ...rest } = session;
    return res.status(201).json({ message: 'Session created', session: rest });
  }
  return res.status(201).json({ message: 'Session created', session });
}

// The runbook's "Before": a direct insert without a transaction, 201 whatever happens.
async function before(req, res) {
  const id = crypto.randomUUID();
  const [, userId, jobTitle, difficulty, duration, sessionType] = values(req, id);
  const session = { id, user_id: userId, job_title: jobTitle, difficulty, duration, session_type: sessionType, status: 'created' };
  try {
    const sessionResult = await pool.query(INSERT, values(req, id));
    Object.assign(session, sessionResult.rows[0]);
    console.log('✅ Session created successfully in database:', id);
  } catch (e) {
    console.error('Session insert failed:', e.code, e.message);
  }
  await cache(session);
  return created(res, session);
}

// The runbook's fix.
async function fixed(req, res) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const userResult = await client.query('SELECT id, credits FROM users WHERE id = $1 AND is_active = true', [req.user.id]);
    if (userResult.rows.length === 0) {
      await client.query('ROLLBACK');
      return res.status(400).json({
        error: 'Invalid user reference or associated data not found',
        code: 'INVALID_USER_REFERENCE',
        details: 'The user account may not exist or be inactive',
      });
    }
    if (userResult.rows[0].credits <= 0) {
      await client.query('ROLLBACK');
      return res.status(403).json({ error: 'Insufficient credits', code: 'INSUFFICIENT_CREDITS' });
    }
    const sessionResult = await client.query(INSERT, values(req, crypto.randomUUID()));
    await client.query('UPDATE users SET credits = credits - 1 WHERE id = $1', [req.user.id]);
    await client.query('COMMIT');
    const session = sessionResult.rows[0];
    console.log('✅ Session created successfully in database:', session.id);
    if (option('--other-change')) {
      // Another client (an admin, a payment) changes the credits meanwhile.
      await pool.query('UPDATE users SET credits = credits + $2 WHERE id = $1', [req.user.id, Number(option('--other-change'))]);
    }
    await cache(session);
    if (flag('--create-then-hang')) {
      return undefined;
    }
    return created(res, session);
  } catch (dbError) {
    await client.query('ROLLBACK').catch(() => {});
    if (dbError.code === '23503') {
      return res.status(400).json({
        error: 'Invalid user reference or associated data not found',
        code: 'INVALID_USER_REFERENCE',
        details: 'The user account may not exist or be inactive',
      });
    }
    return res.status(500).json({ error: 'Failed to create session', details: dbError.message });
  } finally {
    client.release();
  }
}

app.post('/api/sessions/create', auth, async (req, res) => {
  if (flag('--fail-create')) {
    return res.status(500).json({ error: 'Failed to create session', details: 'Database not initialized' });
  }
  if (option('--leak')) {
    // Careless, as real APIs are: a secret in the error, 8 characters of it before the 200th.
    const error = 'Failed to create session';
    const pad = 'x'.repeat(200 - `${error}: `.length - 8);
    return res.status(500).json({ error, details: `${pad}${process.env[option('--leak')] || ''}` });
  }
  if (flag('--idempotent')) {
    const existing = await pool.query(
      'SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1',
      [req.user.id],
    );
    if (existing.rows.length > 0) {
      return created(res, existing.rows[0]);
    }
  }
  return route === 'before' ? before(req, res) : fixed(req, res);
});

async function main() {
  if (redis) {
    await redis.connect();
  }
  const cert = option('--tls-cert');
  const key = option('--tls-key');
  const server = cert
    ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, app)
    : http.createServer(app);
  server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
    console.log(`listening ${server.address().port}`);
  });
  const stop = () => {
    server.close();
    pool.end().catch(() => {});
    if (redis) redis.destroy();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error('the stand-in API did not start:', e.message);
  process.exit(1);
});

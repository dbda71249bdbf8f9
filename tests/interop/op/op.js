// Loopback OpenID provider for Portcullis interop tests (oidc-provider 8.8.1).
//
//   node tests/interop/op/op.js
//
// Listens on 127.0.0.1, port 0 (an ephemeral port), plain http. The FIRST and
// ONLY line written to stdout is the issuer, e.g. `http://127.0.0.1:41234`.
// Everything else (oidc-provider notices, request errors) goes to stderr.
//
// Endpoints (oidc-provider 8.x default routes; all relative to the issuer):
//   GET  /.well-known/openid-configuration   discovery
//   GET  /jwks                               jwks_uri (public keys only)
//   POST /token                              token_endpoint
//   POST /test/rotate  -> {"kid":"k2"}       new RSA key prepended; new tokens use it,
//                                            older keys stay published in /jwks
//   POST /test/retire  -> {"kids":["k2"]}    drop every key but the newest
//
// Client: client_id `gw-test`, client_secret `gw-test-secret-0123456789`,
// grant_type client_credentials only, client_secret_post authentication:
//
//   curl -s -X POST "$ISSUER/token" -d grant_type=client_credentials \
//     -d client_id=gw-test -d client_secret=gw-test-secret-0123456789 \
//     -d scope='read:items'
//
// The access token is an RS256 JWT (header typ "at+jwt", kid) for the resource
// server `https://api.portcullis.test` (aud), with claims iss, sub (=client_id),
// client_id, jti, iat, exp, scope (requested scopes that the resource server
// defines: read:items, write:items). The resource is the default one, so the
// request need not carry `resource=`; any other resource is rejected with
// invalid_target.
//
// Environment (optional): OP_ACCESS_TOKEN_TTL  access token lifetime in seconds
// (default 600).
//
// Rotation rebuilds the Provider object in place with the new key set; the
// in-memory adapter storage below is shared by every rebuilt Provider, so
// nothing already issued is lost.

import crypto from 'node:crypto';
import http from 'node:http';

// oidc-provider prints its development NOTICEs with console.info (stdout):
// keep stdout for the issuer line only.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const { default: Provider, errors } = await import('oidc-provider');

const RESOURCE = 'https://api.portcullis.test';
const RESOURCE_SCOPES = 'read:items write:items';
const CLIENT_ID = 'gw-test';
const CLIENT_SECRET = 'gw-test-secret-0123456789';
const TTL = Number.parseInt(process.env.OP_ACCESS_TOKEN_TTL || '600', 10);
if (!Number.isInteger(TTL) || TTL <= 0) {
  console.error('op.js: OP_ACCESS_TOKEN_TTL must be a positive integer');
  process.exit(2);
}

// ---------------------------------------------------------------- storage

const storage = new Map(); // shared across Provider rebuilds

class SharedMemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  static live(entry) {
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt < Date.now()) return undefined;
    return entry;
  }

  async upsert(id, payload, expiresIn) {
    storage.set(this.key(id), {
      payload: structuredClone(payload),
      expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined,
    });
    if (payload.grantId) {
      const gk = `grant:${payload.grantId}`;
      const list = storage.get(gk)?.payload || [];
      list.push(this.key(id));
      storage.set(gk, { payload: list });
    }
    if (payload.userCode) storage.set(`userCode:${payload.userCode}`, { payload: id });
    if (payload.uid) storage.set(`uid:${payload.uid}`, { payload: id });
  }

  async find(id) {
    const entry = SharedMemoryAdapter.live(storage.get(this.key(id)));
    return entry ? structuredClone(entry.payload) : undefined;
  }

  async findByUserCode(userCode) {
    const id = storage.get(`userCode:${userCode}`)?.payload;
    return id ? this.find(id) : undefined;
  }

  async findByUid(uid) {
    const id = storage.get(`uid:${uid}`)?.payload;
    return id ? this.find(id) : undefined;
  }

  async consume(id) {
    const entry = storage.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    storage.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const gk = `grant:${grantId}`;
    for (const k of storage.get(gk)?.payload || []) storage.delete(k);
    storage.delete(gk);
  }
}

// ---------------------------------------------------------------- keys

let keySeq = 0;
let keys = []; // private JWKs, newest first

function newRsaKey() {
  keySeq += 1;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk, kid: `k${keySeq}`, use: 'sig', alg: 'RS256',
  };
}

// ---------------------------------------------------------------- provider

const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    adapter: SharedMemoryAdapter,
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    }],
    jwks: { keys: keys.map((k) => ({ ...k })) },
    cookies: { keys: cookieKeys },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: RESOURCE_SCOPES,
            audience: RESOURCE,
            accessTokenTTL: TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      ClientCredentials: TTL,
      AccessToken: TTL,
    },
  });
  provider.on('server_error', (ctx, err) => console.error('op.js server_error:', err));
  provider.on('grant.error', (ctx, err) => console.error('op.js grant.error:', err.message, err.error_description || ''));
  return { provider, callback: provider.callback() };
}

// ---------------------------------------------------------------- server

let current = null; // { provider, callback }
let issuer = null;

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
  });
  res.end(data);
}

function testControl(req, res, path) {
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: 'method not allowed' });
    return;
  }
  req.resume(); // ignore any body
  try {
    if (path === '/test/rotate') {
      const key = newRsaKey();
      keys = [key, ...keys];
      current = buildProvider(issuer);
      console.error(`op.js: rotated, signing kid ${key.kid}, published ${keys.map((k) => k.kid).join(',')}`);
      sendJson(res, 200, { kid: key.kid });
    } else if (path === '/test/retire') {
      keys = keys.slice(0, 1);
      current = buildProvider(issuer);
      console.error(`op.js: retired, published ${keys.map((k) => k.kid).join(',')}`);
      sendJson(res, 200, { kids: keys.map((k) => k.kid) });
    } else {
      sendJson(res, 404, { error: 'unknown test endpoint' });
    }
  } catch (err) {
    console.error('op.js test control error:', err);
    sendJson(res, 500, { error: String(err && err.message ? err.message : err) });
  }
}

const server = http.createServer((req, res) => {
  const path = (req.url || '/').split('?')[0];
  if (path.startsWith('/test/')) {
    testControl(req, res, path);
    return;
  }
  current.callback(req, res);
});

server.on('error', (err) => {
  console.error('op.js: server error:', err);
  process.exit(1);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  keys = [newRsaKey()];
  current = buildProvider(issuer);
  process.stdout.write(`${issuer}\n`);
});

function shutdown(signal) {
  console.error(`op.js: ${signal}, exiting`);
  server.close();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

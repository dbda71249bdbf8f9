// oidc-provider 8.8.1 as a client_credentials token server, for benches/oauth (bench.py).
//
//   OAUTHBENCH_ALG=ES256 OAUTHBENCH_CLIENT_SECRET=... node benches/oauth/op/server.mjs
//
// Listens on 127.0.0.1, port 0 (ephemeral), plain HTTP. The FIRST and ONLY line written to
// stdout is the issuer, e.g. `http://127.0.0.1:41234`; everything else goes to stderr.
//
// What it issues: JWT access tokens (RFC 9068, header typ "at+jwt") for the client_credentials
// grant. oidc-provider does that only through features.resourceIndicators: the resource server
// info says accessTokenFormat 'jwt' and jwt.sign.alg, and defaultResource() supplies the
// resource for requests that name none. One signing key, made at startup with node:crypto:
// ES256 -> P-256, RS256 -> RSA 2048.
//
// One client: client_id OAUTHBENCH_CLIENT_ID (default `bench`), client_secret
// OAUTHBENCH_CLIENT_SECRET (required; unreserved characters only, so the Basic credentials need
// no form-encoding), client_secret_basic, grant_types [client_credentials], scope `read`.
//
//   curl -s -u bench:$SECRET -d grant_type=client_credentials -d scope=read $ISSUER/token
//
// Environment:
//   OAUTHBENCH_ALG            ES256 | RS256 (default ES256)
//   OAUTHBENCH_CLIENT_ID      default bench
//   OAUTHBENCH_CLIENT_SECRET  required
//   OAUTHBENCH_RESOURCE       resource server / aud (default https://api.bench)
//   OAUTHBENCH_TTL            access token lifetime in seconds (default 900 = 15m)
//   OIDC_PROVIDER_DIR         directory of the oidc-provider package to import (default: resolve
//                             `oidc-provider` from this folder, i.e. ./node_modules)
//
// Access tokens in JWT format are not stored (oidc-provider only upserts opaque tokens), so the
// default in-memory adapter never grows under load.

import crypto from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// oidc-provider prints its development NOTICEs with console.info (stdout):
// keep stdout for the issuer line only.
console.log = console.error;
console.info = console.error;
console.debug = console.error;
console.warn = console.error;

const ALG = process.env.OAUTHBENCH_ALG || 'ES256';
const CLIENT_ID = process.env.OAUTHBENCH_CLIENT_ID || 'bench';
const CLIENT_SECRET = process.env.OAUTHBENCH_CLIENT_SECRET || '';
const RESOURCE = process.env.OAUTHBENCH_RESOURCE || 'https://api.bench';
const TTL = Number.parseInt(process.env.OAUTHBENCH_TTL || '900', 10);
const SCOPE = 'read';

function die(msg) {
  console.error(`server.mjs: ${msg}`);
  process.exit(2);
}
if (!['ES256', 'RS256'].includes(ALG)) die(`OAUTHBENCH_ALG must be ES256 or RS256, not ${ALG}`);
if (!/^[A-Za-z0-9._~-]{16,}$/.test(CLIENT_SECRET)) {
  die('OAUTHBENCH_CLIENT_SECRET must be at least 16 unreserved characters [A-Za-z0-9._~-]');
}
if (!/^[A-Za-z0-9._~-]+$/.test(CLIENT_ID)) die('OAUTHBENCH_CLIENT_ID must be unreserved characters');
if (!Number.isInteger(TTL) || TTL <= 0) die('OAUTHBENCH_TTL must be a positive integer');

const providerDir = process.env.OIDC_PROVIDER_DIR;
const { default: Provider, errors } = providerDir
  ? await import(pathToFileURL(path.join(path.resolve(providerDir), 'lib', 'index.js')).href)
  : await import('oidc-provider');

// ---------------------------------------------------------------- key

function signingKey(alg) {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }), kid: `bench-${alg.toLowerCase()}`, use: 'sig', alg,
  };
}

// ---------------------------------------------------------------- provider

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: SCOPE,
      // the provider's only key may be EC: keep the (unused) id_token alg consistent with it
      id_token_signed_response_alg: ALG,
    }],
    jwks: { keys: [signingKey(ALG)] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'offline_access', SCOPE],
    enabledJWA: {
      idTokenSigningAlgValues: [ALG],
    },
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
          if (resourceIndicator !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: SCOPE,
            audience: RESOURCE,
            accessTokenTTL: TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: ALG } },
          };
        },
      },
    },
    ttl: { ClientCredentials: TTL },
  });
  provider.on('server_error', (ctx, err) => console.error('server.mjs server_error:', err));
  provider.on('grant.error', (ctx, err) => console.error('server.mjs grant.error:', err.message, err.error_description || ''));
  return provider;
}

// ---------------------------------------------------------------- server

let callback = null;
const server = http.createServer((req, res) => callback(req, res));
// wrk keeps its connections busy; nothing here should close them mid-run
server.keepAliveTimeout = 60_000;

server.on('error', (err) => {
  console.error('server.mjs: server error:', err);
  process.exit(1);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  callback = buildProvider(issuer).callback();
  console.error(`server.mjs: node ${process.version} (OpenSSL ${process.versions.openssl}), `
    + `${ALG}, client ${CLIENT_ID}, resource ${RESOURCE}, ttl ${TTL}s`);
  process.stdout.write(`${issuer}\n`);
});

function shutdown(signal) {
  console.error(`server.mjs: ${signal}, exiting`);
  server.close();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

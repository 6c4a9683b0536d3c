/// <reference path="./undici-parts.d.ts" />
/**
 * The part of undici the agent uses (connection pools to the application, the peers and the
 * control plane; a client to the CA; their errors), imported from the files that define it
 * rather than from undici's index, which loads fetch, WebSocket, EventSource, the HTTP caches
 * and the mock agents as well: ~7 MB of an idle agent's RSS (bench/startup.ts). These are the
 * classes the index exports (test/agent/undici.test.ts checks it); like the index, this adds
 * the request API (`request`, `stream`, …) to every dispatcher. Code outside the agent's
 * idle path (the edge's OIDC discovery, the demo) imports 'undici' itself.
 */
import Dispatcher from 'undici/lib/dispatcher/dispatcher.js';
import api from 'undici/lib/api/index.js';
import Pool from 'undici/lib/dispatcher/pool.js';
import Client from 'undici/lib/dispatcher/client.js';
import errors from 'undici/lib/core/errors.js';
import buildConnector from 'undici/lib/core/connect.js';

Object.assign(Dispatcher.prototype, api);

export { Pool, Client, errors, buildConnector };

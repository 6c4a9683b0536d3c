import 'reflect-metadata'; // @peculiar/x509 (through tsyringe) needs the Reflect metadata API at load time
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/**
 * @peculiar/x509, set up for node: the CA issues with it, tests build and read certificates
 * with it. Not for the agent process, where it would stay loaded for the process's life
 * (~5 MB of an idle agent): the agent reads peer certificates with node:crypto (`uriSans` in
 * pki.ts) and writes its CSRs with der.ts (`createCsr` in pki.ts).
 */
x509.cryptoProvider.set(webcrypto as unknown as Crypto);
export { x509 };


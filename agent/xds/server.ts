import { chmodSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Server, ServerCredentials, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';

/** One xDS service (SDS, ECDS, …): its gRPC definition and handlers. */
export interface XdsService {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

export interface XdsServer {
  /** Adds another service; only before `start()`. */
  addService(service: XdsService): void;
  start(): Promise<void>;
  /** Ends open streams and removes the socket file. */
  close(): Promise<void>;
}

/**
 * One gRPC server on a Unix socket (`unix:/path` or a plain path) serving every xDS
 * service the agent offers to its local Envoy. SDS hands out the SVID's private key, so
 * the socket is owner-only (0600) whatever the umask, from its first moment: it is bound in
 * a new 0700 directory beside its final path, where no one else can connect, made 0600
 * there, and only then renamed into place (replacing a stale socket). The umask itself is
 * process-wide and cannot be changed safely around one bind.
 */
export function createXdsServer(socket: string, services: XdsService[] = []): XdsServer {
  const socketPath = socket.startsWith('unix:') ? socket.slice('unix:'.length) : socket;
  const server = new Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  let started = false;
  const add = (service: XdsService) => {
    if (started) throw new Error('xDS services must be added before the server starts');
    server.addService(service.definition, service.implementation);
  };
  services.forEach(add);
  return {
    addService: add,
    async start() {
      const privateDir = mkdtempSync(path.join(path.dirname(socketPath), '.palisade-xds-'));
      try {
        const bound = path.join(privateDir, 'socket');
        await new Promise<void>((resolve, reject) =>
          server.bindAsync(`unix:${bound}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
        );
        started = true;
        chmodSync(bound, 0o600);
        renameSync(bound, socketPath);
      } catch (err) {
        server.forceShutdown();
        throw err;
      } finally {
        rmSync(privateDir, { recursive: true, force: true });
      }
    },
    async close() {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 1000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      rmSync(socketPath, { force: true });
    },
  };
}

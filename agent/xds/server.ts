import { rmSync } from 'node:fs';
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
 * service the agent offers to its local Envoy. The socket file is replaced if stale and
 * made owner-only (0600 via umask is not portable, so the directory should be private too).
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
      rmSync(socketPath, { force: true });
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(`unix:${socketPath}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
      );
      started = true;
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

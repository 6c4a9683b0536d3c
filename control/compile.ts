/**
 * The one place the control plane turns submitted documents into filters. A document is a
 * service's own policy or a scope layer (the trust-domain root, a namespace: docs/policy.md,
 * "Layers"); a service's effective policy is its own composed with every stored layer whose
 * scope contains it, compiled by the call `palisade compile --layer` makes, so the filter is
 * the same bytes a CI build of the same files produces. Builds are kept (control/builds.ts).
 */
import { analyzeLayer } from '../compiler/frontend/index.ts';
import { contains } from '../compiler/compose/index.ts';
import type { CheckedLayer, Diagnostic } from '../compiler/frontend/ast.ts';
import { buildLayers, type ServiceBuild } from './builds.ts';

/** The file name diagnostics are reported against: what `palisade compile` would call it. */
export const policyFile = (name: string) => `${name}.policy.json`;

export interface Document {
  name: string;
  source: string;
}

/** What a document is (service policy or scope layer), or its diagnostics. */
export function analyzeDocument(doc: Document): { layer: CheckedLayer | null; diagnostics: Diagnostic[] } {
  return analyzeLayer(policyFile(doc.name), doc.source);
}

/** `service`'s effective policy: its own document and the layers above it among `layers`, compiled. */
export function compileService(own: Document, service: string, layers: Document[]): Promise<ServiceBuild> {
  const above = layers.filter((l) => scopeContains(l, service));
  return buildLayers([own, ...above].map((d) => ({ file: policyFile(d.name), text: d.source })));
}

/** Whether a stored layer's scope (its level text) contains `service`. */
export function scopeContains(layer: Document, service: string): boolean {
  const level = analyzeDocument(layer).layer?.level;
  return level?.kind === 'scope' && contains(level, service);
}

/**
 * What counts as "this machine" for listeners that must stay private (the admin API, the
 * outbound listener, the signer) and for the Host header of requests they accept.
 */

/** A listen address that only local processes can reach. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A peer address (as node reports it, IPv4-mapped included) on loopback. */
export function isLoopbackAddress(address: string | undefined): boolean {
  return address !== undefined && (address === '::1' || /^(::ffff:)?127\./.test(address));
}

/**
 * A Host header naming a loopback literal or localhost. A page that rebinds its own DNS name
 * to 127.0.0.1 still sends its name here, so such requests are told apart from local ones.
 */
export function isLoopbackAuthority(host: string | undefined): boolean {
  return /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|localhost)(:\d{1,5})?$/.test(host ?? '');
}

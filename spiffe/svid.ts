/** An X.509-SVID as the CA's API hands it out (join, renew, mint) and the agent receives it. */
/** What the CA hands back for every issued SVID (join, renew, mint). */
export interface IssuedSvid {
  spiffe_id: string;
  serial: string;
  not_before: string;
  not_after: string;
  /** The SVID chain, leaf first (the root is the trust anchor and is not repeated). */
  svid_pem: string;
  bundle_pem: string;
}


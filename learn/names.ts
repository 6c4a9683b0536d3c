/** `base`, else `base<sep>2`, `base<sep>3`…: the first name `taken` does not already hold. */
export function firstFree(base: string, taken: (name: string) => boolean, sep = '-'): string {
  let name = base;
  for (let k = 2; taken(name); k++) name = `${base}${sep}${k}`;
  return name;
}

// The asc compiler in a worker thread started without the tsx loader: tsx would otherwise
// transform asc's and binaryen's multi-megabyte JavaScript on every process start (seconds
// of CPU before the first compile). Plain JavaScript for that reason. Protocol: receives
// { id, files: [name, text][], args }, answers { id, wasm } or { id, error }.
import { parentPort } from 'node:worker_threads';
import asc from 'assemblyscript/asc';

parentPort.on('message', async ({ id, files, args }) => {
  const sources = new Map(files);
  const stderr = asc.createMemoryStream();
  let wasm = null;
  try {
    const result = await asc.main(args, {
      stdout: asc.createMemoryStream(),
      stderr,
      readFile: (name) => sources.get(name.replace(/^\.\//, '')) ?? null,
      writeFile: (name, contents) => {
        if (name.endsWith('.wasm') && typeof contents !== 'string') wasm = contents;
      },
      listFiles: () => [],
    });
    if (result.error || !wasm) parentPort.postMessage({ id, error: `asc failed: ${result.error?.message ?? ''}\n${stderr.toString()}` });
    else parentPort.postMessage({ id, wasm }, [wasm.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, error: `asc crashed: ${err?.message ?? err}` });
  }
});

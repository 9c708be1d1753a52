// www/wick.d.ts compiles under TypeScript's strict mode, and a web developer's use of the API
// (tests/types/usage.ts) type-checks against it and against the official `openai` package's
// types: Wick's responses are assignable to OpenAI's, and engine.fetch is the client's fetch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('wick.d.ts types the API and its responses are OpenAI\'s types', () => {
  const tsc = spawnSync(process.execPath, [
    'node_modules/typescript/bin/tsc', '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext',
    '--moduleResolution', 'nodenext', '--lib', 'es2022,dom,dom.iterable,dom.asynciterable', '--skipLibCheck', 'false',
    'tests/types/usage.ts', 'www/wick.d.ts',
  ], { encoding: 'utf8' });
  assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
});

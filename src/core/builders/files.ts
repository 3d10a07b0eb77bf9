// The files the agent writes into a built version's .enjin-build/ directory: the builders' scripts and static server.
import { COLLECTSTATIC_SCRIPT, NODE_SCRIPT, PYTHON_SCRIPT } from './scripts.ts';
import { STATIC_SERVER_SCRIPT } from './static-server.ts';

export const BUILDER_FILES: Readonly<Record<string, string>> = {
  'node.sh': NODE_SCRIPT,
  'python.sh': PYTHON_SCRIPT,
  'collectstatic.sh': COLLECTSTATIC_SCRIPT,
  'static-server.cjs': STATIC_SERVER_SCRIPT,
};

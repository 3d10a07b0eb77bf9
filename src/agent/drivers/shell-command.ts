// Running an app's command so that its own process is the one the agent watches: `sh -c CMD` stays as a parent
// (dash does not exec the last command), so `ps` would show the shell's pid and signals would reach the shell first.

/** Anything that makes the command more than one plain program call: operators, quoting, expansions, globs, comments. */
const SHELL_SYNTAX = /[|&;<>()$`\\"'*?[\]{}#~!\n\r]/;

/** Words `exec` cannot run: reserved words and builtins with no program of the same name on the PATH. */
export const NOT_EXECUTABLE = new Set([
  '!', '.', ':', 'alias', 'bg', 'break', 'case', 'cd', 'command', 'continue', 'do', 'done', 'elif', 'else', 'esac',
  'eval', 'exec', 'exit', 'export', 'fc', 'fg', 'fi', 'for', 'getopts', 'hash', 'if', 'jobs', 'local', 'read',
  'readonly', 'return', 'set', 'shift', 'source', 'then', 'times', 'trap', 'type', 'ulimit', 'umask', 'unalias',
  'unset', 'until', 'wait', 'while',
]);

/**
 * `exec CMD` when CMD is a simple command (one program and its plain arguments), so the shell is replaced by the app
 * and the pid the agent records is the app's; anything else (pipes, `&&`, redirections, variables, globs, quoting,
 * a leading VAR=value, a builtin) runs as written.
 */
export function execIfSimple(command: string): string {
  const words = command.trim().split(/[ \t]+/);
  const first = words[0] ?? '';
  if (first === '' || SHELL_SYNTAX.test(command) || first.includes('=') || NOT_EXECUTABLE.has(first)) return command;
  return `exec ${command.trim()}`;
}

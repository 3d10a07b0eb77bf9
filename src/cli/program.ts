// The commander program with enjin's global options, and what every command shares: the client and the output.
import { Command } from 'commander';
import { EnjinClient, findCredentials } from '../client/client.ts';

export interface GlobalOpts {
  data?: string;
  json?: boolean;
}

export const program = new Command();
program
  .name('enjin')
  .description('A self-hosted cloud: give it machines, deploy directories, reach them by hostname.')
  .option('--data <dir>', 'data directory of the local enjin (its credentials.json is used); default ENJIN_DATA or ./.enjin')
  .option('--json', 'print machine-readable JSON')
  .showHelpAfterError()
  .exitOverride();

export const globals = (): GlobalOpts => program.opts<GlobalOpts>();
export const client = () => new EnjinClient(findCredentials(globals().data));
export const print = (json: unknown, human: () => string) => {
  process.stdout.write(globals().json ? `${JSON.stringify(json, null, 2)}\n` : `${human()}\n`);
};

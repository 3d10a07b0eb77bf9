// The router's guard against losing its routes to a controller that lost its memory: a populated table is never
// swapped for an empty one from a new incarnation unless the update says the emptiness is meant (allowEmpty).
import type { RouteTableUpdate } from '../core/messages.ts';

/** 'hold': keep the current table and remember the refused incarnation until an acceptable table arrives. */
export type TableVerdict = 'apply' | 'hold';

export function judgeTable(current: Pick<RouteTableUpdate, 'incarnation' | 'hosts'>, update: Pick<RouteTableUpdate, 'incarnation' | 'hosts' | 'allowEmpty'>): TableVerdict {
  const holding = Object.keys(current.hosts).length > 0;
  const empty = Object.keys(update.hosts).length === 0;
  // Within one controller run an empty table is a real decision (the last project was destroyed); across runs it may
  // be a controller on an empty or restored store, which must not take every site down.
  if (holding && empty && update.incarnation !== current.incarnation && update.allowEmpty !== true) return 'hold';
  return 'apply';
}

/** What an operator reads when a table was refused. */
export function heldMessage(routerId: string, incarnation: string): string {
  return (
    `router ${routerId} keeps its route table and refuses an empty one from a new controller run (${incarnation}): ` +
    'a controller that lost its store would otherwise take every site down. If the cluster really should route nothing, ' +
    'allow one empty table from the controller (the operator action "allow empty routes"), or deploy an app so the table is not empty'
  );
}

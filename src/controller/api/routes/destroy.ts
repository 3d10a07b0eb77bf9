// Destroying a project, and what becomes of its volumes: kept (and said so) unless asked to remove them.
import { notFound } from '../../../core/errors.ts';
import type { Job, NodeVolume } from '../../../core/model.ts';
import type { Controller } from '../../controller.ts';
import { dropProjectVolumes, heldVolumes } from '../../volumes.ts';

export interface DestroyAnswer {
  /** the destroy tree; null when only the volumes of a project already destroyed were removed */
  job: Job | null;
  /** volumes the nodes keep (destroy without volumes=true), with the node holding each */
  volumesKept: Array<{ name: string; node: string; dir: string; sizeBytes: number | null }>;
  /** volumes removed right away (a project already destroyed); a destroy tree removes them in its last job */
  volumesRemoved: Array<{ name: string; dir: string }>;
}

/** `force`: the tree does not wait for nodes; one that is unreachable stops the instances when it returns. */
export async function destroyProject(c: Controller, name: string, volumes: boolean, force = false): Promise<DestroyAnswer> {
  const workspace = c.defaultWorkspace().name;
  const kept = () => heldVolumes(c.state, workspace, name).map((v) => ({ name: v.name, node: v.node, dir: v.dir, sizeBytes: v.sizeBytes }));
  let project;
  try {
    project = c.project(name);
  } catch (err) {
    // The project is gone, but `destroy --volumes` still removes what it left on the nodes.
    if (!volumes || kept().length === 0) throw err;
    const removed: NodeVolume[] = await dropProjectVolumes(c.state, c.bus, workspace, name, () => {});
    return { job: null, volumesKept: [], volumesRemoved: removed.map((v) => ({ name: v.name, dir: v.dir })) };
  }
  if (!project) throw notFound(`project ${name}`);
  const job = await c.destroy(project, { volumes, force });
  return { job, volumesKept: volumes ? [] : kept(), volumesRemoved: [] };
}

// A veth pair with a sluice data plane on its right end, for the kernel tests that drive the pipeline through a Dataplane.
import { Dataplane } from '../../controller/dataplane/dataplane.js';
import { Lab, type PairTopology } from '../../netns-lab/lab.js';

/** A pair lab and the data plane of its right namespace, pinned under /sys/fs/bpf/<lab id>. */
export interface PairDataplane {
  lab: Lab;
  net: PairTopology;
  /** The data plane's bpffs directory. */
  dir: string;
  dp: Dataplane;
}

/**
 * Builds a veth pair and opens a data plane for its right namespace. If either step fails, the
 * lab is removed before the error is rethrown; otherwise the caller destroys the data plane and
 * then the lab (in afterAll).
 */
export async function openPairDataplane(): Promise<PairDataplane> {
  const lab = new Lab();
  try {
    const net = await lab.pair();
    const dir = `/sys/fs/bpf/${lab.id}`;
    const dp = await Dataplane.open({ dir, netns: net.right.netns });
    return { lab, net, dir, dp };
  } catch (error: unknown) {
    await lab.destroy();
    throw error;
  }
}

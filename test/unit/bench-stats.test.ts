// The benches' shared arithmetic and tables: figures over several loads, and two-peer tables.
import { describe, expect, it } from 'vitest';
import { median, medianOverLoads, type Figure } from '../../bench/stats.js';
import { formatTable } from '../../bench/table.js';

const fig = (wall: number, kernel: number): Figure => ({ wall, kernel });

describe('median', () => {
  it('is the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

describe('medianOverLoads', () => {
  it('gives every figure of a row, whatever its field, the median over the loads, each clock apart', () => {
    const loads = [
      [{ name: 'a', sluice: fig(10, 9), peer: fig(20, 19), req: fig(30, 29) }],
      [{ name: 'b', sluice: fig(12, 5), peer: fig(18, 25), req: fig(31, 20) }],
      [{ name: 'c', sluice: fig(11, 7), peer: fig(22, 21), req: fig(90, 27) }],
    ];
    expect(medianOverLoads(loads)).toEqual([
      { name: 'a', sluice: fig(11, 7), peer: fig(20, 21), req: fig(31, 27) },
    ]);
  });

  it('keeps the rows of the first load in their order', () => {
    const rows = (k: number) => [
      { id: 1, sluice: fig(k, k) },
      { id: 2, sluice: fig(10 * k, 10 * k) },
    ];
    expect(medianOverLoads([rows(1), rows(2), rows(3)]).map((r) => r.sluice.wall)).toEqual([2, 20]);
  });
});

describe('formatTable', () => {
  const rows = [{ workload: 'w', sluice: 3, peer: 2 }];

  it('heads the first column sluice unless the table names another subject', () => {
    const plain = formatTable({ title: 't', unit: 'ns/pkt', peer: 'C lb_min', rows });
    const twoPeers = formatTable({
      title: 't',
      unit: 'ns/pkt',
      subject: 'C lb_req',
      peer: 'C lb_min',
      rows,
    });
    expect(plain).toMatch(/sluice \(ns\/pkt\)\s+C lb_min \(ns\/pkt\)/);
    expect(twoPeers).toMatch(/C lb_req \(ns\/pkt\)\s+C lb_min \(ns\/pkt\)/);
    expect(twoPeers).not.toMatch(/sluice/);
    expect(twoPeers).toContain('1.50×');
  });
});

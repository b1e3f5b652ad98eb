#!/usr/bin/env python3
"""Make the B-basis test potential bbasis_alcu.yaml and its ML-PACE references.

    python3 tests/data/pace/make_bbasis_refs.py potential
        writes tests/data/pace/bbasis_{alcu,cu_zbl,cu_distance}.yaml (deterministic: seeded
        random coefficients)
    cargo test --release --test pace_extrapolation -- --ignored write_bbasis_active_sets
        writes bbasis_*_linear.asi and bbasis_*_nonlinear.asi with aceuq's .npz writer
    python3 tests/data/pace/make_bbasis_refs.py run /path/to/lmp_with_ML-PACE
        runs `pair_style pace/extrapolation` (run 0) on the structures below with each .asi and
        writes bbasis_*_mlpace.xyz (energies, forces, per-atom energies, gamma_linear,
        gamma_nonlinear; every float %.17g)

Standard library only. The potentials are made up for testing (not fitted to anything).
bbasis_alcu: two elements, two densities each, ranks 1 to 6 with every coupling-tree shape,
functions that share n and l but differ in lint, unsorted species/l orders, a skipped function,
three radial families and a density-switched core repulsion. bbasis_cu_zbl and
bbasis_cu_distance: one element, ranks 1 to 6, with the ZBL and the distance inner cutoffs.
"""

import math
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["alcu", "cu_zbl", "cu_distance"]


def yaml_path(name):
    return os.path.join(HERE, f"bbasis_{name}.yaml")


def xyz_path(name):
    return os.path.join(HERE, f"bbasis_{name}_mlpace.xyz")


def asi_path(name, kind):
    return os.path.join(HERE, f"bbasis_{name}_{kind}.asi")


ELEMENTS = ["Al", "Cu"]
MASS = {"Al": 26.9815385, "Cu": 63.546}


def g(x):
    return repr(float(x))


def radial(rng, nradmax, lmax, nradbase):
    """crad[n][l][k]: close to the identity (as fitted potentials start) plus noise."""
    return [
        [
            [(1.0 if k == n else 0.0) + 0.05 * rng.uniform(-1, 1) for k in range(nradbase)]
            for _ in range(lmax + 1)
        ]
        for n in range(nradmax)
    ]


def coef(rng, rank):
    scale = 0.4 / 6.0 ** (rank - 1)
    return [scale * rng.uniform(-1, 1), scale * rng.uniform(-1, 1)]


def block_functions(rng, center, other, nrad1):
    """(type, nr, nl, lint) of one block's functions."""
    a, b = center, other
    f = []
    if b is None:
        for n in range(1, nrad1 + 1):
            f.append(([a, a], [n], [0], None))
        f += [
            ([a, a, a], [1, 1], [0, 0], None),
            ([a, a, a], [1, 2], [1, 1], None),
            ([a, a, a], [2, 2], [2, 2], None),
            ([a, a, a], [1, 2], [2, 2], None),
            ([a, a, a, a], [1, 1, 1], [0, 0, 0], [0]),
            ([a, a, a, a], [1, 1, 2], [1, 1, 0], [0]),
            ([a, a, a, a], [1, 1, 2], [0, 1, 1], [1]),
            ([a, a, a, a], [1, 2, 2], [1, 2, 1], [1]),
            ([a, a, a, a], [2, 1, 1], [2, 2, 2], [2]),
            ([a, a, a, a], [1, 1, 1], [1, 1, 2], [2]),
            ([a, a, a, a, a], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0]),
            ([a, a, a, a, a], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0]),
            ([a, a, a, a, a], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1]),
            ([a, a, a, a, a], [1, 1, 1, 1], [1, 1, 1, 1], [2, 2]),
            ([a, a, a, a, a], [1, 2, 1, 2], [0, 1, 1, 0], [1, 1]),
            ([a, a, a, a, a], [2, 1, 2, 1], [2, 2, 1, 1], [1, 1]),
            ([a, a, a, a, a], [2, 1, 2, 1], [2, 2, 1, 1], [2, 2]),
            ([a, a, a, a, a, a], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 0, 0]),
            ([a, a, a, a, a, a], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1], [0, 1, 1]),
            ([a, a, a, a, a, a], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 0, 1]),
            ([a, a, a, a, a, a], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 2, 1]),
            ([a, a, a, a, a, a], [2, 1, 1, 1, 1], [1, 1, 1, 1, 2], [0, 2, 2]),
            ([a, a, a, a, a, a], [1, 1, 1, 1, 1], [1, 1, 1, 1, 2], [2, 2, 2]),
            ([a] * 7, [1] * 6, [0] * 6, [0, 0, 0, 0]),
            ([a] * 7, [1] * 6, [1, 1, 1, 1, 0, 0], [0, 0, 0, 0]),
            ([a] * 7, [1] * 6, [1, 1, 1, 1, 0, 0], [2, 2, 0, 0]),
            ([a] * 7, [1, 1, 2, 2, 1, 1], [1, 1, 0, 0, 1, 1], [0, 0, 0, 0]),
        ]
    else:
        for n in range(1, nrad1 + 1):
            f.append(([a, b], [n], [0], None))
        f += [
            ([a, b, b], [1, 1], [0, 0], None),
            ([a, b, b], [1, 2], [1, 1], None),
            ([a, a, b], [1, 1], [1, 1], None),
            ([a, b, a], [2, 1], [2, 2], None),
            ([a, b, b, b], [1, 1, 1], [0, 0, 0], [0]),
            ([a, a, b, b], [1, 1, 1], [1, 1, 2], [2]),
            ([a, b, a, a], [1, 1, 2], [1, 0, 1], [1]),
            ([a, b, a, b], [2, 1, 1], [1, 1, 0], [0]),
            ([a, a, b, a, b], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0]),
            ([a, a, b, a, b], [1, 1, 1, 1], [1, 1, 1, 1], [2, 2]),
            ([a, b, b, b, b], [1, 2, 1, 2], [0, 0, 1, 1], [0, 0]),
            ([a, b, a, b, a, b], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1]),
            ([a, b, b, a, a, b], [1, 1, 1, 1, 2], [1, 1, 0, 0, 0], [0, 0, 0]),
            ([a, b, a, a, b, b, a], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 1, 1], [0, 0, 0, 0]),
        ]
    return f


def write_block(out, rng, key, emb, spec, inner, funcs_for):
    out.append(f"  - speciesblock: {' '.join(key)}")
    if len(key) == 1:
        npoti, params, rho_cut = emb[key[0]]
        out += [
            "    ndensityi: 2",
            f"    npoti: {npoti}",
            f"    parameters: [{', '.join(g(p) for p in params)}]",
            f"    rho_core_cut: {g(rho_cut[0])}",
            f"    drho_core_cut: {g(rho_cut[1])}",
        ]
    if spec is not None:
        lmax, nradmax, nradbase, fam, lam, rcut, dcut, core = spec
        crad = radial(rng, nradmax, lmax, nradbase)
        rc = "[" + ", ".join(
            "[" + ", ".join("[" + ", ".join(g(x) for x in ks) + "]" for ks in ls) + "]"
            for ls in crad) + "]"
        out += [
            f"    nradmaxi: {nradmax}",
            f"    lmaxi: {lmax}",
            f"    rcutij: {g(rcut)}",
            f"    dcutij: {g(dcut)}",
            "    NameOfCutoffFunctionij: cos",
            f"    r_in: {g(inner[1])}",
            f"    delta_in: {g(inner[2])}",
            f"    inner_cutoff_type: {inner[0]}",
            f"    nradbaseij: {nradbase}",
            f"    radbase: {fam}",
            f"    radparameters: [{g(lam)}]",
            f"    radcoefficients: {rc}",
            f"    core-repulsion: [{g(core[0])}, {g(core[1])}]",
        ]
    out.append("    nbody:")
    for q, (typ, nr, nl, lint) in enumerate(funcs_for):
        rank = len(nr)
        c = coef(rng, rank)
        s = f"      - {{type: {' '.join(typ)}, nr: {nr}, nl: {nl}"
        if lint is not None:
            s += f", lint: {lint}"
        s += f", c: [{g(c[0])}, {g(c[1])}]"
        if q == 3:
            s += ", skip: true"
        out.append(s + "}")


def potential():
    rng = random.Random(20240523)
    specs = {
        # (element(s)): lmax, nradmax, nradbase, family, lambda, rcut, dcut, core
        ("Al",): (3, 3, 6, "ChebExpCos", 5.25, 5.5, 0.01, (6.0, 1.5)),
        ("Al", "Cu"): (3, 2, 5, "ChebPow", 2.0, 5.0, 0.01, (5.0, 1.4)),
        ("Cu",): (2, 2, 5, "SBessel", 1.0, 5.2, 0.01, (4.0, 1.3)),
    }
    emb = {"Al": ("FinnisSinclairShiftedScaled", [1, 1, 1, 0.5], (1.0, 0.5)),
           "Cu": ("FinnisSinclair", [1, 1, 0.6, 0.75], (1.0, 0.5))}
    out = ["global:", "  DeltaSplineBins: 0.001", "species:"]
    for key in [("Al",), ("Al", "Cu"), ("Cu",), ("Cu", "Al")]:
        center = key[0]
        other = key[1] if len(key) == 2 else None
        nrad1 = specs[(center,) if other is None else ("Al", "Cu")][2]
        funcs = block_functions(rng, center, other, nrad1)
        write_block(out, rng, key, emb, specs.get(key), ("density", 0.0, 0.0), funcs)
    with open(yaml_path("alcu"), "w") as fh:
        fh.write("\n".join(out) + "\n")
    print("wrote", yaml_path("alcu"))
    # One element with the ZBL and the distance inner cutoffs (radial basis on and core
    # repulsion off between r_in - delta_in and r_in).
    for name, inner, core, fam, lam in [
        ("cu_zbl", ("zbl", 2.0, 0.5), (1.0, 0.0), "ChebExpCos", 5.25),
        ("cu_distance", ("distance", 1.9, 0.4), (3.0, 1.2), "ChebLinear", 1.0),
    ]:
        rng = random.Random(name)
        spec = (2, 2, 5, fam, lam, 4.8, 0.2, core)
        emb1 = {"Cu": ("FinnisSinclairShiftedScaled", [1, 1, 0.7, 0.5], (100000.0, 250.0))}
        out = ["global:", "  DeltaSplineBins: 0.001", "species:"]
        write_block(out, rng, ("Cu",), emb1, spec, inner, block_functions(rng, "Cu", None, 5))
        with open(yaml_path(name), "w") as fh:
            fh.write("\n".join(out) + "\n")
        print("wrote", yaml_path(name))


def structures(name):
    """(name, cell rows (LAMMPS restricted triclinic), pbc, symbols, positions)."""
    if name != "alcu":
        return short_range_structures()
    rng = random.Random(7)
    out = []
    # fcc Al-Cu random alloy, 2x2x2 conventional cells, rattled.
    a = 3.85
    basis = [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    sym, pos = [], []
    for i in range(2):
        for j in range(2):
            for k in range(2):
                for b in basis:
                    sym.append("Al" if rng.random() < 0.6 else "Cu")
                    pos.append([(i + b[0]) * a + rng.gauss(0, 0.1),
                                (j + b[1]) * a + rng.gauss(0, 0.1),
                                (k + b[2]) * a + rng.gauss(0, 0.1)])
    out.append(("fcc_alloy_222", [[2 * a, 0, 0], [0, 2 * a, 0], [0, 0, 2 * a]], True, sym, pos))
    # B2 AlCu 3x3x3, compressed, rattled.
    a = 2.9
    sym, pos = [], []
    for i in range(3):
        for j in range(3):
            for k in range(3):
                for el, sh in (("Al", 0.0), ("Cu", 0.5)):
                    sym.append(el)
                    pos.append([(i + sh) * a + rng.gauss(0, 0.05),
                                (j + sh) * a + rng.gauss(0, 0.05),
                                (k + sh) * a + rng.gauss(0, 0.05)])
    out.append(("b2_333", [[3 * a, 0, 0], [0, 3 * a, 0], [0, 0, 3 * a]], True, sym, pos))
    # A small triclinic cell (many periodic images inside the cutoff).
    cell = [[4.1, 0, 0], [1.3, 3.9, 0], [-0.7, 0.9, 4.3]]
    sym, pos = [], []
    for q in range(6):
        f = [rng.random() for _ in range(3)]
        pos.append([sum(f[d] * cell[d][c] for d in range(3)) for c in range(3)])
        sym.append("Cu" if q % 3 == 0 else "Al")
    out.append(("triclinic_6", cell, True, sym, pos))
    # A 12-atom cluster (no periodicity).
    sym, pos = [], []
    while len(pos) < 12:
        p = [rng.uniform(-3.5, 3.5) for _ in range(3)]
        if all(math.dist(p, q) > 2.2 for q in pos):
            pos.append(p)
            sym.append("Al" if len(pos) % 2 else "Cu")
    out.append(("cluster_12", [[30, 0, 0], [0, 30, 0], [0, 0, 30]], False, sym, pos))
    # Dimers: Al-Cu inside the core-repulsion switch, and Cu-Cu at a normal distance.
    out.append(("dimer_alcu_1.05", [[30, 0, 0], [0, 30, 0], [0, 0, 30]], False, ["Al", "Cu"],
                [[0.0, 0.0, 0.0], [0.6, 0.7, 0.5]]))
    out.append(("dimer_cucu_2.4", [[30, 0, 0], [0, 30, 0], [0, 0, 30]], False, ["Cu", "Cu"],
                [[0.0, 0.0, 0.0], [1.2, -1.6, 1.3]]))
    return out


def short_range_structures():
    """Cu structures with atoms inside the inner cutoffs."""
    rng = random.Random(8)
    out = []
    a = 3.2
    basis = [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    sym, pos = [], []
    for i in range(2):
        for j in range(2):
            for k in range(2):
                for b in basis:
                    sym.append("Cu")
                    pos.append([(i + b[0]) * a + rng.gauss(0, 0.2),
                                (j + b[1]) * a + rng.gauss(0, 0.2),
                                (k + b[2]) * a + rng.gauss(0, 0.2)])
    out.append(("fcc_compressed_222", [[2 * a, 0, 0], [0, 2 * a, 0], [0, 0, 2 * a]], True, sym,
                pos))
    sym, pos = [], []
    while len(pos) < 10:
        p = [rng.uniform(-2.5, 2.5) for _ in range(3)]
        if all(math.dist(p, q) > 1.6 for q in pos):
            pos.append(p)
            sym.append("Cu")
    out.append(("cluster_10", [[30, 0, 0], [0, 30, 0], [0, 0, 30]], False, sym, pos))
    for r in (1.2, 1.75, 2.3):
        out.append((f"dimer_{r}", [[30, 0, 0], [0, 30, 0], [0, 0, 30]], False, ["Cu", "Cu"],
                    [[0.0, 0.0, 0.0], [r * 0.6, r * 0.48, r * 0.64]]))
    return out


def write_data(path, elements, cell, pbc, sym, pos):
    lo = -15.0 if not pbc else 0.0
    with open(path, "w") as fh:
        fh.write("B-basis test structure\n\n")
        fh.write(f"{len(sym)} atoms\n{len(elements)} atom types\n\n")
        fh.write(f"{g(lo)} {g(lo + cell[0][0])} xlo xhi\n")
        fh.write(f"{g(lo)} {g(lo + cell[1][1])} ylo yhi\n")
        fh.write(f"{g(lo)} {g(lo + cell[2][2])} zlo zhi\n")
        if pbc:
            fh.write(f"{g(cell[1][0])} {g(cell[2][0])} {g(cell[2][1])} xy xz yz\n")
        fh.write("\nMasses\n\n")
        for t, el in enumerate(elements, 1):
            fh.write(f"{t} {MASS[el]}\n")
        fh.write("\nAtoms # atomic\n\n")
        for i, (s, p) in enumerate(zip(sym, pos), 1):
            fh.write(f"{i} {elements.index(s) + 1} {g(p[0])} {g(p[1])} {g(p[2])}\n")


def run_lammps(lmp, work, data, elements, pbc, yaml, asi):
    inp = f"""units metal
atom_style atomic
atom_modify map array
boundary {'p p p' if pbc else 'f f f'}
read_data {data}
pair_style pace/extrapolation
pair_coeff * * {yaml} {asi} {' '.join(elements)}
fix fg all pair 1 pace/extrapolation gamma 1
compute pe all pe/atom
neighbor 1.0 bin
thermo_style custom step pe
thermo_modify format float %.17g
dump d all custom 1 {work}/dump.txt id type fx fy fz c_pe f_fg
dump_modify d format float %.17g sort id
run 0
print "ENERGY $(pe:%.17g)"
"""
    with open(os.path.join(work, "in.lmp"), "w") as fh:
        fh.write(inp)
    res = subprocess.run([lmp, "-in", "in.lmp", "-log", "log.lammps"], cwd=work,
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(res.stdout + res.stderr)
    energy = None
    for line in res.stdout.splitlines():
        if line.startswith("ENERGY "):
            energy = float(line.split()[1])
    rows = []
    with open(os.path.join(work, "dump.txt")) as fh:
        lines = fh.read().splitlines()
    start = lines.index(next(l for l in lines if l.startswith("ITEM: ATOMS"))) + 1
    for l in lines[start:]:
        rows.append([float(x) for x in l.split()])
    return energy, rows


def run(lmp):
    for pot in NAMES:
        frames = []
        for name, cell, pbc, sym, pos in structures(pot):
            with tempfile.TemporaryDirectory() as work:
                data = os.path.join(work, "data.lmp")
                els = ELEMENTS if pot == "alcu" else ["Cu"]
                write_data(data, els, cell, pbc, sym, pos)
                yaml = yaml_path(pot)
                e_lin, rows_lin = run_lammps(lmp, work, data, els, pbc, yaml,
                                             asi_path(pot, "linear"))
                e_nl, rows_nl = run_lammps(lmp, work, data, els, pbc, yaml,
                                           asi_path(pot, "nonlinear"))
            assert e_lin == e_nl, (name, e_lin, e_nl)
            frames.append((name, cell, pbc, sym, pos, e_lin, rows_lin, rows_nl))
        with open(xyz_path(pot), "w") as fh:
            for name, cell, pbc, sym, pos, e, rl, rn in frames:
                lat = " ".join(g(x) for row in cell for x in row)
                p = "T T T" if pbc else "F F F"
                fh.write(f"{len(sym)}\n")
                fh.write(f'Lattice="{lat}" Properties=species:S:1:pos:R:3:forces:R:3:'
                         f'energies:R:1:gamma_linear:R:1:gamma_nonlinear:R:1 energy={g(e)} '
                         f'pbc="{p}" config_type={name}\n')
                for i in range(len(sym)):
                    a, b = rl[i], rn[i]
                    assert a[0] == b[0] == i + 1 and a[2:6] == b[2:6]
                    vals = pos[i] + a[2:5] + [a[5], a[6], b[6]]
                    fh.write(sym[i] + " " + " ".join(g(v) for v in vals) + "\n")
        print("wrote", xyz_path(pot))


if __name__ == "__main__":
    if sys.argv[1:2] == ["potential"]:
        potential()
    elif sys.argv[1:2] == ["run"] and len(sys.argv) == 3:
        run(sys.argv[2])
    else:
        sys.exit(__doc__)

// A second opinion on Avow's manifests from an independent, pure-TypeScript C2PA reader
// (@trustnxt/c2pa-ts: no c2pa-rs, no native code). Prints one JSON object per file: whether the
// active manifest validates (its own status codes), the assertion labels, every action with its
// digital source type and parameters, and Avow's dev.avow.watermark assertion (which the reader
// does not know, so its CBOR is decoded from the JUMBF box as any third party would).
//
//   npm install --prefix DIR @trustnxt/c2pa-ts
//   NODE_PATH=DIR/node_modules node bench/read_c2pa_ts.mjs FILE...
// (tests/test_independent_reader.py runs it on a real output.)
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

// ES modules ignore NODE_PATH, and the package exports ESM only: find it there by hand.
const roots = (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean);
const home = roots.map((r) => path.join(r, '@trustnxt', 'c2pa-ts')).find((p) => existsSync(p));
if (!home) {
    console.error('@trustnxt/c2pa-ts not found on NODE_PATH');
    process.exit(2);
}
const load = async (part) => import(pathToFileURL(path.join(home, 'dist', part, 'index.js')).href);
const { JPEG, PNG, BMFF } = await load('asset');
const { SuperBox, CBORBox } = await load('jumbf');
const { ManifestStore, ValidationResult } = await load('manifest');

function plain(value) {
    return JSON.parse(JSON.stringify(value, (_, v) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v)));
}

async function read(file) {
    const buf = new Uint8Array(await fs.readFile(file));
    const Kind = [JPEG, PNG, BMFF].find((k) => k.canRead(buf));
    if (!Kind) return { file, error: 'format not supported by c2pa-ts' };
    const asset = new Kind(buf);
    const jumbf = asset.getManifestJUMBF();
    if (!jumbf) return { file, manifest: false };
    let store, validation;
    try {
        store = ManifestStore.read(SuperBox.fromBuffer(jumbf));
        validation = await store.validate(asset);
    } catch (e) {
        validation = ValidationResult.fromError(e);
    }
    const manifest = store?.getActiveManifest();
    const assertions = manifest?.assertions?.assertions ?? [];
    const actions = manifest?.assertions?.getActionAssertions().flatMap((a) => a.actions) ?? [];
    const custom = assertions
        .filter((a) => a.label === 'dev.avow.watermark')
        .map((a) => a.sourceBox?.contentBoxes?.find((b) => b instanceof CBORBox)?.content);
    return {
        file,
        manifest: true,
        valid: validation.isValid,
        failures: validation.statusEntries.filter((e) => !e.success).map((e) => e.code),
        claim_generator: plain(manifest?.claim?.claimGeneratorInfo ?? manifest?.claim?.claimGeneratorName ?? null),
        assertion_labels: assertions.map((a) => a.fullLabel),
        actions: actions.map((a) => plain({
            action: a.action, digitalSourceType: a.digitalSourceType, softwareAgent: a.softwareAgent?.name, parameters: a.parameters,
        })),
        avow_watermark: plain(custom),
    };
}

for (const file of process.argv.slice(2)) console.log(JSON.stringify(await read(file)));

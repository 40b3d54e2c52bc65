#!/usr/bin/env node
// Validates a CycloneDX 1.5 JSON document against the official JSON schema (as
// published in @cyclonedx/cyclonedx-library, with the SPDX licence and JSF
// schemas it references), with ajv in strict draft-07 mode and format checks.
//
// Usage: validate_sbom.js SBOM.json
// Prints "valid" and exits 0, or prints each schema error and exits 1.
// The packages come from tools/sbom (npm ci, run by scripts/install-deps.sh).
'use strict';
const fs = require('fs');
const path = require('path');

const tools = path.join(__dirname, '..', '..', 'tools', 'sbom', 'node_modules');
const Ajv = require(path.join(tools, 'ajv'));
const addFormats = require(path.join(tools, 'ajv-formats'));
const schemaDir = path.join(tools, '@cyclonedx', 'cyclonedx-library', 'res', 'schema');

function load(name) {
  return JSON.parse(fs.readFileSync(path.join(schemaDir, name), 'utf8'));
}

const ajv = new Ajv({strict: false, allErrors: true, validateFormats: true});
addFormats(ajv);
// Formats ajv-formats does not implement; the SBOM uses neither (no URLs or
// e-mail addresses), so any string is let through rather than logging each use.
ajv.addFormat('iri-reference', true);
ajv.addFormat('idn-email', true);
// bom-1.5 refers to its neighbours by their file names; register them under the
// URLs those relative references resolve to.
for (const name of ['spdx.SNAPSHOT.schema.json', 'jsf-0.82.SNAPSHOT.schema.json']) {
  const schema = load(name);
  schema.$id = 'http://cyclonedx.org/schema/' + name;
  ajv.addSchema(schema);
}
const validate = ajv.compile(load('bom-1.5.SNAPSHOT.schema.json'));
const doc = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
if (doc.specVersion !== '1.5') {
  console.log(`specVersion is ${doc.specVersion}, not 1.5`);
  process.exit(1);
}
if (validate(doc)) {
  console.log('valid');
  process.exit(0);
}
for (const e of validate.errors) {
  console.log(`${e.instancePath || '/'}: ${e.message} ${JSON.stringify(e.params)}`);
}
process.exit(1);

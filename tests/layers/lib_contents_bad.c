/* A shared library that breaks both rules lib_contents.sh checks on
 * libtpdecode.so: it exports a tools symbol and a name without the tpd_
 * prefix (layers.lib_contents_selftest expects both to be named). */
int tpd_synth_write_fake(int x);
int exported_without_prefix(int x);
int tpd_engine_create(void);
int tpd_version(void);

int tpd_synth_write_fake(int x) { return x + 1; }
int exported_without_prefix(int x) { return x + 2; }
int tpd_engine_create(void) { return 0; }
int tpd_version(void) { return 0; }

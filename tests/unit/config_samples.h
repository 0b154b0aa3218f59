/* config.json texts for tests/unit/test_config.c, as save_pretrained wrote
 * them (transformers 5.24.0, 4.57.6 and 4.43.4) for LlamaConfig /
 * Qwen2Config / MistralConfig with the same arguments: *_TF5 in the layout of
 * transformers 5 (rope_parameters), *_TF4 of 4.57 and *_TF443 of 4.43
 * (rope_theta + rope_scaling).  CONF_TF5 is the conformance model
 * tests/data/conformance/llama31-tiny-bf16 loaded with AutoConfig and saved
 * again by transformers 5.24.0. */
#ifndef TPD_TEST_CONFIG_SAMPLES_H
#define TPD_TEST_CONFIG_SAMPLES_H

extern const char *const LLAMA3_TF5;
extern const char *const LLAMA3_TF4;
extern const char *const LLAMA3_TF443;
extern const char *const QWEN2_TF5;
extern const char *const QWEN2_TF4;
extern const char *const QWEN2_TF443;
extern const char *const CONF_TF5;
extern const char *const MISTRAL_TF5;
extern const char *const MISTRAL_TF4;

#endif

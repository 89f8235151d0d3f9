/**
 * The training-side noise schedule (DDPMScheduler's tables and prediction type) from a model's
 * scheduler_config.json, as train_dreambooth.py builds it: DDPMScheduler.from_pretrained(model, "scheduler").
 * Only the fields that define the tables and the target are kept; prediction_type may be overridden.
 */
export type PredictionType = 'epsilon' | 'v_prediction';

const TABLE_FIELDS = ['num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'trained_betas'] as const;

export function trainingNoiseSchedule(schedulerConfig: Record<string, unknown>, predictionType?: PredictionType): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of TABLE_FIELDS) if (schedulerConfig[k] !== undefined && schedulerConfig[k] !== null) out[k] = schedulerConfig[k];
  out.prediction_type = predictionType ?? schedulerConfig.prediction_type ?? 'epsilon';
  return out;
}

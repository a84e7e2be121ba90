# Prints, as JSON, what Ruby's Sidekiq API sees of one queue: ruby inspect.rb QUEUE
require "sidekiq"
require "sidekiq/api"
require "json"

queue = ARGV.fetch(0)
entry = ->(job) {
  { "class" => job.klass, "args" => job.args, "jid" => job.jid, "queue" => job.queue,
    "error_message" => job["error_message"], "retry_count" => job["retry_count"] }
}
puts JSON.dump(
  "queue" => Sidekiq::Queue.new(queue).map(&entry),
  "retry" => Sidekiq::RetrySet.new.select { |job| job.queue == queue }.map(&entry),
  "dead" => Sidekiq::DeadSet.new.select { |job| job.queue == queue }.map(&entry),
)

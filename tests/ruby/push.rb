# Pushes one job with Ruby's Sidekiq::Client: ruby push.rb CLASS QUEUE ARGS_JSON
require "sidekiq"
require "json"

klass, queue, args = ARGV
jid = Sidekiq::Client.push("class" => klass, "queue" => queue, "args" => JSON.parse(args))
puts jid
